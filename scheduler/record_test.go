package scheduler

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// heldStream is a prepared stream whose command runs until its context
// ends, and which says when it started.
type heldStream struct {
	started chan struct{}
}

func (h *heldStream) TTY() bool { return true }
func (h *heldStream) Run(ctx context.Context, cmd Command) (ExitStatus, error) {
	_, _ = io.WriteString(cmd.Stdout, "$ ")
	close(h.started)
	<-ctx.Done()
	return ExitStatus{}, ctx.Err()
}
func (h *heldStream) Close() error { return nil }

// TestWarmLoginEndsWhenClaimRecordFails: a pod handed out with its claim
// record in flight runs the user's command at once; when the record then
// fails, the command is stopped, the user is told plainly, and the pod is
// released rather than parked for a reconnect.
func TestWarmLoginEndsWhenClaimRecordFails(t *testing.T) {
	pol := policy("default")
	pol.ReconnectWindow = 0
	pools := newFakePools(pol)
	pools.idle = 1
	stream := &heldStream{started: make(chan struct{})}
	var settle func(error)
	pools.onClaim = func(_ context.Context, p *Pod) {
		p.Stream = stream
		p.Record, settle = NewClaimRecord()
	}
	s := newTestScheduler(t, pools, &fakeExecer{}, clock.RealClock{})
	a, err := s.Attach(context.Background(), id("alice", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := a.Run(context.Background(), Process{Kind: KindShell, Pty: &Pty{Term: "xterm"}, Stdout: io.Discard})
		done <- err
	}()
	<-stream.started // the command runs before the record is written
	settle(&Refusal{Err: ErrPodGone, Reason: "your pod was taken back before your session started, please reconnect"})
	err = <-done
	if !errors.Is(err, ErrPodGone) || !strings.Contains(UserMessage(err), "taken back") {
		t.Fatalf("Run after the record failed: %v (user sees %q)", err, UserMessage(err))
	}
	_ = a.Close()
	if got := <-pools.released; got != "pod-1" {
		t.Errorf("released %s, want pod-1", got)
	}
}

// TestAPIRequestsCountedOnCriticalPath: the requests a login's claim makes
// with the login's context count for that login; those made with any other
// context, or after the first output, do not.
func TestAPIRequestsCountedOnCriticalPath(t *testing.T) {
	pol := policy("default")
	pools := newFakePools(pol)
	pools.idle = 1
	pools.onClaim = func(ctx context.Context, _ *Pod) {
		CountAPIRequest(ctx)                  // a claim PATCH the login waits for
		CountAPIRequest(context.Background()) // background work
	}
	reg := prometheus.NewRegistry()
	s, err := New(pools, &fakeExecer{}, clock.RealClock{}, slog.New(slog.NewTextHandler(io.Discard, nil)), reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Attach(context.Background(), id("alice", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Run(context.Background(), Process{Kind: KindExec, Command: "true", Stdout: io.Discard}); err != nil {
		t.Fatal(err)
	}
	_ = a.Close()
	count, sum := histogram(t, reg, "podgate_attach_api_requests")
	if count != 1 || sum != 1 {
		t.Errorf("api requests histogram: %v logins, %v requests; want 1 login with 1 request", count, sum)
	}
}

// histogram reads the sample count and sum of a histogram family.
func histogram(t *testing.T, reg *prometheus.Registry, name string) (uint64, float64) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var count uint64
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			count += h.GetSampleCount()
			sum += h.GetSampleSum()
		}
	}
	return count, sum
}
