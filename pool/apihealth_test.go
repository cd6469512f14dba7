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
