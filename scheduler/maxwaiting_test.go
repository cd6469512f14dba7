package scheduler

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// TestMaxWaiting: with no idle pod, MaxWaiting logins wait for a cold pod
// and the next one is refused at once with ErrAtCapacity; once a waiter is
// served, a slot is free again. A negative bound lets nobody wait.
func TestMaxWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pools := newFakePools(policy("default"))
		pools.gate = make(chan struct{})
		s, err := New(pools, &fakeExecer{}, clock.RealClock{}, slog.New(slog.NewTextHandler(io.Discard, nil)),
			prometheus.NewRegistry(), Options{MaxWaiting: 2})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		got := make(chan Attachment, 2)
		for _, u := range []string{"a", "b"} {
			go func() {
				a, err := s.Attach(ctx, id(u, ""), nil)
				if err != nil {
					t.Errorf("waiter %s: %v", u, err)
				}
				got <- a
			}()
		}
		synctest.Wait() // both are queued behind the gate
		if _, err := s.Attach(ctx, id("c", ""), nil); !errors.Is(err, ErrAtCapacity) {
			t.Errorf("third login while two wait: %v, want ErrAtCapacity", err)
		}
		if UserMessage(ErrAtCapacity) != "podgate: all pods are busy, please try again in a minute" {
			t.Errorf("message %q", UserMessage(ErrAtCapacity))
		}
		close(pools.gate)
		for range 2 {
			if a := <-got; a != nil {
				_ = a.Close()
				<-pools.released
			}
		}
		a, err := s.Attach(ctx, id("d", ""), nil)
		if err != nil {
			t.Fatalf("login after the queue drained: %v", err)
		}
		_ = a.Close()
		<-pools.released

		none, err := New(pools, &fakeExecer{}, clock.RealClock{}, slog.New(slog.NewTextHandler(io.Discard, nil)),
			prometheus.NewRegistry(), Options{MaxWaiting: -1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := none.Attach(ctx, id("e", ""), nil); !errors.Is(err, ErrAtCapacity) {
			t.Errorf("login with MaxWaiting < 0 and no idle pod: %v, want ErrAtCapacity", err)
		}
	})
}

// TestMaxWaitZeroRefusesAtOnce: PODGATE_MAX_WAIT=0s means a login that
// finds no idle pod is refused at once, without creating a pod, and one
// that finds an idle pod is served as usual.
func TestMaxWaitZeroRefusesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pol := policy("default")
		pol.MaxWait = 0
		pools := newFakePools(pol)
		pools.gate = make(chan struct{}) // a Create would block here
		s, err := New(pools, &fakeExecer{}, clock.RealClock{}, slog.New(slog.NewTextHandler(io.Discard, nil)),
			prometheus.NewRegistry(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Attach(context.Background(), id("a", ""), nil); !errors.Is(err, ErrAtCapacity) {
			t.Fatalf("login with no idle pod and MaxWait 0: %v, want ErrAtCapacity at once", err)
		}
		if n := pools.heldCount(); n != 0 {
			t.Fatalf("%d pods created for a refused login", n)
		}
		pools.mu.Lock()
		pools.idle = 1
		pools.mu.Unlock()
		a, err := s.Attach(context.Background(), id("b", ""), nil)
		if err != nil {
			t.Fatalf("login with an idle pod and MaxWait 0: %v", err)
		}
		_ = a.Close()
		<-pools.released
	})
}
