package pool

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/podgate/podgate/scheduler"
)

// TestWaitEstimate: position over capacity, to the second; unknown (0)
// without a capacity.
func TestWaitEstimate(t *testing.T) {
	cases := []struct {
		pos  int
		c    float64
		want time.Duration
	}{
		{7, 0.35, 20 * time.Second},
		{1, 1.7, time.Second},
		{3, 0, 0},
		{0, 1, 0},
	}
	for _, c := range cases {
		if got := waitEstimate(c.pos, c.c); got != c.want {
			t.Errorf("waitEstimate(%d, %g) = %v, want %v", c.pos, c.c, got, c.want)
		}
	}
}

// toldRecorder keeps what AwaitPod last told a waiter.
type toldRecorder struct {
	mu   sync.Mutex
	last scheduler.WaitState
}

func (r *toldRecorder) tell(s scheduler.WaitState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = s
}

// waitFor polls until the waiter was told position and wait.
func (r *toldRecorder) waitFor(t *testing.T, who string, position int, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		last := r.last
		r.mu.Unlock()
		if last.Position == position && last.Wait == wait {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was told %+v, want position %d and about %v", who, last, position, wait)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWaitersToldPlaceAndWait: users waiting for a pod are told their
// place in line, in arrival order, and position / capacity as the wait;
// when the first is served, those behind move up.
func TestWaitersToldPlaceAndWait(t *testing.T) {
	prof := unitProfile(t)
	cs := namingClientset()
	p := newUnitPool(t, cs, prof)
	p.opts.MaxStarting = 1
	p.demand.mu.Lock()
	p.demand.sizerLocked(prof, p.clock.Now()).setCapacity(0.5)
	p.demand.mu.Unlock()
	alice, aliceFailed := waitCold(t, p, cs) // alice's pod takes the one slot
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := func(user string, r *toldRecorder) {
		go func() {
			if _, err := p.AwaitPod(ctx, "", scheduler.Claim{Identity: scheduler.Identity{User: user}, Session: user}, r.tell); err != nil && ctx.Err() == nil {
				t.Errorf("%s: AwaitPod: %v", user, err)
			}
		}()
	}
	var bob, carol toldRecorder
	wait("bob", &bob)
	waitInLine(t, p, prof.Name, 2)
	wait("carol", &carol)
	waitInLine(t, p, prof.Name, 3)
	bob.waitFor(t, "bob", 2, 4*time.Second)
	carol.waitFor(t, "carol", 3, 6*time.Second)

	makeReady(t, cs, podsOf(t, cs)[0].Name)
	receive(t, "alice", alice, aliceFailed)
	bob.waitFor(t, "bob", 1, 2*time.Second)
	carol.waitFor(t, "carol", 2, 4*time.Second)
}
