package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func newTestHealth(t *testing.T) (*Health, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	h, err := NewHealth("127.0.0.1:0", reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return h, reg
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestHealthz(t *testing.T) {
	h, _ := newTestHealth(t)
	if code, body := get(t, h.Handler(), "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
}

func TestReadyzFollowsAcceptingAndChecks(t *testing.T) {
	h, _ := newTestHealth(t)
	var apiErr error
	h.AddReadinessCheck("api reachable", func(context.Context) error { return apiErr })
	handler := h.Handler()

	code, body := get(t, handler, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]accepting failed") {
		t.Errorf("before SetAccepting(true): %d %q", code, body)
	}

	h.SetAccepting(true)
	if code, body := get(t, handler, "/readyz"); code != http.StatusOK || !strings.Contains(body, "[+]api reachable ok") {
		t.Errorf("all passing: %d %q", code, body)
	}

	apiErr = errors.New("dial tcp 10.0.0.1:6443: connection refused")
	code, body = get(t, handler, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]api reachable failed") {
		t.Errorf("failing check: %d %q", code, body)
	}
	if strings.Contains(body, "10.0.0.1") {
		t.Errorf("readyz body leaks check detail: %q", body)
	}

	apiErr = nil
	h.SetAccepting(false) // shutdown: not ready at once
	if code, body := get(t, handler, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]accepting failed") {
		t.Errorf("after SetAccepting(false): %d %q", code, body)
	}
}

// TestReadyzTimesOutSlowChecks shows that a hung dependency makes the
// replica unready instead of hanging the probe. synctest's fake clock makes
// the timeout instant and deterministic.
func TestReadyzTimesOutSlowChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newTestHealth(t)
		h.SetAccepting(true)
		h.AddReadinessCheck("informers synced", func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
		start := time.Now()
		code, body := get(t, h.Handler(), "/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]informers synced failed") {
			t.Errorf("hung check: %d %q", code, body)
		}
		if waited := time.Since(start); waited != h.checkTimeout {
			t.Errorf("probe waited %v, want the check timeout %v", waited, h.checkTimeout)
		}
	})
}

func TestMetricsServesRegistry(t *testing.T) {
	h, reg := newTestHealth(t)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "podgate_test_total", Help: "Test counter."})
	reg.MustRegister(c)
	c.Inc()
	code, body := get(t, h.Handler(), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{"podgate_test_total 1", "go_goroutines", "process_start_time_seconds"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestNewHealthRejectsDoubleRegistration(t *testing.T) {
	_, reg := newTestHealth(t)
	if _, err := NewHealth(":0", reg, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("second NewHealth on one registry succeeded, want an already-registered error")
	}
}

// TestServeStopsWithContext runs the real server on a loopback listener and
// checks that cancelling ctx shuts it down cleanly.
func TestServeStopsWithContext(t *testing.T) {
	h, _ := newTestHealth(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, ln) }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz over TCP = %d", resp.StatusCode)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel = %v, want nil", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		t.Error("server still answers after shutdown")
	}
}

func TestRunReportsListenError(t *testing.T) {
	h, err := NewHealth("256.0.0.1:1", prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "listening for metrics and health") {
		t.Errorf("Run on a bad address = %v", err)
	}
}

// TestPprofOnlyWhenEnabled: the profiles expose internals (stacks, command
// line), so they are served only when the operator asks for them.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	h, _ := newTestHealth(t)
	if code, _ := get(t, h.Handler(), "/debug/pprof/goroutine?debug=1"); code != http.StatusNotFound {
		t.Errorf("profiling off: /debug/pprof/goroutine = %d, want 404", code)
	}
	h.EnableProfiling()
	code, body := get(t, h.Handler(), "/debug/pprof/goroutine?debug=1")
	if code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("profiling on: /debug/pprof/goroutine = %d %.80q", code, body)
	}
}
