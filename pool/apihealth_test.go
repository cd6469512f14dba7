package pool

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

func TestAPIHealth(t *testing.T) {
	var h apiHealth
	now := time.Unix(1000, 0)
	if h.unavailable() != nil {
		t.Fatal("a new verdict is down")
	}
	refused := fmt.Errorf("Get https://api/readyz: dial tcp: %w", syscall.ECONNREFUSED)
	steps := []struct {
		err      error
		changed  bool
		wantDown bool
	}{
		{nil, false, false},
		{refused, true, true}, // API server stopped
		{refused, false, true},
		{fmt.Errorf("rate limiter: %w", context.DeadlineExceeded), false, true}, // a timeout says nothing
		{nil, true, false},
		{fmt.Errorf("probe: %w", context.DeadlineExceeded), false, false},   // nor here
		{apierrors.NewInternalError(errors.New("etcd failed")), true, true}, // etcd gone: /readyz is 500
		{nil, true, false},
	}
	for i, s := range steps {
		now = now.Add(time.Second)
		if got := h.observe(s.err, now); got != s.changed {
			t.Errorf("step %d (%v): changed = %v, want %v", i, s.err, got, s.changed)
		}
		if down := h.unavailable() != nil; down != s.wantDown {
			t.Errorf("step %d (%v): down = %v, want %v", i, s.err, down, s.wantDown)
		}
	}
}

// TestAPIHealthUpFor: after an outage, expired Leases are not trusted until
// the API has been back for a Lease period.
func TestAPIHealthUpFor(t *testing.T) {
	var h apiHealth
	t0 := time.Unix(1000, 0)
	ttl := 5 * time.Second
	if !h.upFor(t0, ttl) {
		t.Fatal("no outage seen yet, but not up")
	}
	h.observe(errors.New("connection refused"), t0)
	if h.upFor(t0.Add(time.Minute), ttl) {
		t.Fatal("up while down")
	}
	h.observe(nil, t0.Add(20*time.Second))
	if h.upFor(t0.Add(24*time.Second), ttl) {
		t.Error("trusted 4 s after recovery, want a full Lease period")
	}
	if !h.upFor(t0.Add(25*time.Second), ttl) {
		t.Error("not trusted a Lease period after recovery")
	}
}
