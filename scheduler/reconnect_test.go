package scheduler

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"k8s.io/utils/clock"
)

// TestParkTwiceReleasesOlderPod: two connections of one identity that close
// within the window (the second connected before the first was parked, so
// it got a pod of its own) leave one pod parked and release the other,
// instead of dropping the older one while it stays claimed.
func TestParkTwiceReleasesOlderPod(t *testing.T) {
	web := policy("web")
	web.ReconnectWindow = time.Hour
	pools := newFakePools(web)
	pools.idle = 3
	s := newTestScheduler(t, pools, &fakeExecer{}, clock.RealClock{})
	ctx := context.Background()
	a1, err := s.Attach(ctx, id("alice", "web"), nil)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := s.Attach(ctx, id("alice", "web"), nil)
	if err != nil {
		t.Fatal(err)
	}
	first, second := a1.(*connAttachment).pod.Ref.Name, a2.(*connAttachment).pod.Ref.Name
	if first == second {
		t.Fatal("two live connections share a pod")
	}
	_ = a1.Close()
	_ = a2.Close()
	select {
	case got := <-pools.released:
		if got != first {
			t.Errorf("released %s, want the older parked pod %s", got, first)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the older parked pod %s was never released", first)
	}
	a3, err := s.Attach(ctx, id("alice", "web"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := a3.(*connAttachment).pod.Ref.Name; got != second {
		t.Errorf("reconnected to %s, want the last parked pod %s", got, second)
	}
	_ = a3.Close()
	if n, p := pools.heldCount(), pools.parkedCount(); n != 1 || p != 1 {
		t.Errorf("%d pods held, %d parked; want the one parked", n, p)
	}
}

// TestConnAttachmentNamesPod: a connection-mode attachment names its pod,
// which the SSH front end puts in audit lines (they had an empty pod
// field before, since no attachment implemented it).
func TestConnAttachmentNamesPod(t *testing.T) {
	pools, a := attachAlice(t)
	pn, ok := a.(interface{ PodName() string })
	if !ok || pn.PodName() != "pod-1" {
		t.Errorf("attachment %T does not name its pod pod-1", a)
	}
	_ = a.Close()
	<-pools.released
}

// TestReconnectWaitsForParkInFlight: a user who reconnects while this
// replica is still parking their previous pod (scp, then sftp at once)
// waits for the park and gets that pod back, not a new one.
func TestReconnectWaitsForParkInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		web := policy("web")
		web.ReconnectWindow = time.Hour
		pools := newFakePools(web)
		pools.idle = 10
		pools.parkGate = make(chan struct{})
		s := newTestScheduler(t, pools, &fakeExecer{}, clock.RealClock{})
		a1, err := s.Attach(context.Background(), id("alice", "web"), nil)
		if err != nil {
			t.Fatal(err)
		}
		first := a1.(*connAttachment).pod.Ref.Name
		go func() { _ = a1.Close() }()
		synctest.Wait() // the park is in flight, held by the gate
		got := make(chan Attachment, 1)
		go func() {
			a2, err := s.Attach(context.Background(), id("alice", "web"), nil)
			if err != nil {
				t.Errorf("reconnect: %v", err)
			}
			got <- a2
		}()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("the reconnect did not wait for the park in flight")
		default:
		}
		close(pools.parkGate)
		a2 := <-got
		if a2 == nil {
			return
		}
		if name := a2.(*connAttachment).pod.Ref.Name; name != first {
			t.Errorf("reconnected to %s, want the pod being parked, %s", name, first)
		}
		_ = a2.Close()
	})
}
