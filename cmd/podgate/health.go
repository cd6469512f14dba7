package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// errNotAccepting is the "accepting" check's failure: the SSH listener is not
// up yet, or shutdown has begun and new connections should go elsewhere.
var errNotAccepting = errors.New("not accepting SSH connections")

// ReadinessCheck reports whether one dependency is ready. It must return
// promptly once ctx is done.
type ReadinessCheck func(ctx context.Context) error

// namedCheck is one registered readiness check.
type namedCheck struct {
	name  string
	check ReadinessCheck
}

// Health serves the operations endpoints: /metrics from the injected
// registry, /healthz (the process serves HTTP) and /readyz (every readiness
// check passes). Kubernetes routes SSH traffic to a replica only while
// /readyz is 200, so shutdown calls SetAccepting(false) first and the
// replica leaves the Service at once while its sessions drain.
type Health struct {
	addr         string
	gatherer     prometheus.Gatherer
	log          *slog.Logger
	checkTimeout time.Duration

	accepting atomic.Bool
	// pprof adds Go's profiling endpoints to Handler; set before Run.
	pprof bool

	mu sync.Mutex // protects the fields below
	// checks run in registration order; "accepting" is always first.
	checks []namedCheck
	// failing holds the last error text of each failing check, so that a
	// check is logged when it starts or stops failing, not on every probe.
	failing map[string]string
}

// NewHealth returns the operations server for addr. It registers the Go
// runtime and process collectors on reg, which /metrics serves along with
// every other component's metrics. The server is not ready until
// SetAccepting(true).
func NewHealth(addr string, reg *prometheus.Registry, log *slog.Logger) (*Health, error) {
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering runtime metrics: %w", err)
		}
	}
	h := &Health{
		addr:         addr,
		gatherer:     reg,
		log:          log,
		checkTimeout: 3 * time.Second,
		failing:      make(map[string]string),
	}
	h.AddReadinessCheck("accepting", func(context.Context) error {
		if !h.accepting.Load() {
			return errNotAccepting
		}
		return nil
	})
	return h, nil
}

// AddReadinessCheck registers a check that /readyz runs on every probe, such
// as "informers synced" or "api reachable". Call it before Run.
func (h *Health) AddReadinessCheck(name string, check ReadinessCheck) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks = append(h.checks, namedCheck{name: name, check: check})
}

// SetAccepting flips the "accepting" check: true once the SSH listener is
// up, false as the first step of shutdown. It takes effect on the next probe.
func (h *Health) SetAccepting(ok bool) { h.accepting.Store(ok) }

// EnableProfiling makes Handler serve Go's /debug/pprof/ endpoints as well.
// Call it before Run.
func (h *Health) EnableProfiling() { h.pprof = true }

// Handler returns the mux serving /metrics, /healthz and /readyz, and
// /debug/pprof/ when profiling is enabled.
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	if h.pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(h.gatherer, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(h.log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", h.serveReadyz)
	return mux
}

// serveReadyz runs every check concurrently under one timeout and answers
// 200 when all pass, else 503. Like the Kubernetes API server, the body
// lists each check but withholds failure detail, which goes to the log.
func (h *Health) serveReadyz(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	checks := append([]namedCheck(nil), h.checks...)
	h.mu.Unlock()

	ctx, cancel := context.WithTimeout(r.Context(), h.checkTimeout)
	defer cancel()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { errs[i] = c.check(ctx) })
	}
	wg.Wait()

	var body strings.Builder
	ready := true
	for i, c := range checks {
		if errs[i] != nil {
			ready = false
			fmt.Fprintf(&body, "[-]%s failed: reason withheld\n", c.name)
		} else {
			fmt.Fprintf(&body, "[+]%s ok\n", c.name)
		}
		h.noteResult(c.name, errs[i])
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if ready {
		body.WriteString("readyz check passed\n")
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
		body.WriteString("readyz check failed\n")
	}
	_, _ = w.Write([]byte(body.String()))
}

// noteResult logs a check when its outcome changes.
func (h *Health) noteResult(name string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	prev, wasFailing := h.failing[name]
	switch {
	case err != nil && (!wasFailing || prev != err.Error()):
		h.failing[name] = err.Error()
		h.log.Warn("readiness check failing", "check", name, "err", err)
	case err == nil && wasFailing:
		delete(h.failing, name)
		h.log.Info("readiness check passing again", "check", name)
	}
}

// Run listens on the configured address and serves until ctx ends.
func (h *Health) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", h.addr)
	if err != nil {
		return fmt.Errorf("listening for metrics and health on %s: %w", h.addr, err)
	}
	return h.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then shuts down gracefully: in-flight
// scrapes and probes get a few seconds to finish. It closes ln.
func (h *Health) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           h.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	h.log.Info("serving metrics and health", "addr", ln.Addr().String())

	select {
	case err := <-served:
		return fmt.Errorf("serving metrics and health: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	if err != nil {
		return fmt.Errorf("shutting down metrics and health server: %w", err)
	}
	return nil
}
