package pool

import (
	"context"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podgate/podgate/scheduler"
)

// fakePrepared is a prepared stream that only records being closed.
type fakePrepared struct {
	tty    bool
	closed atomic.Bool
}

var _ scheduler.Prepared = (*fakePrepared)(nil)

func (f *fakePrepared) TTY() bool { return f.tty }
func (f *fakePrepared) Run(context.Context, scheduler.Command) (scheduler.ExitStatus, error) {
	return scheduler.ExitStatus{}, nil
}
func (f *fakePrepared) Close() error { f.closed.Store(true); return nil }

// giveStreams gives an idle pod prepared streams, as prepareOne would.
func giveStreams(p *Pool, name string) (tty, plain *fakePrepared) {
	tty, plain = &fakePrepared{tty: true}, &fakePrepared{}
	p.mu.Lock()
	p.prepared[name] = &streams{uid: "uid-" + name, tty: tty, plain: plain}
	p.mu.Unlock()
	return tty, plain
}

// TestClaimKeepsStreamsWhenWatchIsFirst: the watch often delivers this
// replica's own claim before the PATCH response does, sometimes in more
// than one event. The pod's prepared streams must still reach the claimer,
// unclosed; closing them sent about half the logins of the warm benchmark
// through a fresh exec.
func TestClaimKeepsStreamsWhenWatchIsFirst(t *testing.T) {
	prof := unitProfile(t)
	a := idleReadyPod("a", prof)
	cs := fake.NewClientset(a)
	var p *Pool
	cs.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		// The event handler sees the claim, then a later update of the
		// claimed pod, while the PATCH is in flight.
		claimed := a.DeepCopy()
		claimed.Labels[LabelState] = StateClaimed
		claimed.Labels[LabelOwner] = "r1"
		p.onPod(claimed, true)
		p.onPod(claimed.DeepCopy(), true)
		return false, nil, nil
	})
	p = newUnitPool(t, cs, prof)
	tty, plain := giveStreams(p, "a")
	pod, err := p.Claim(context.Background(), "", scheduler.Claim{Identity: scheduler.Identity{User: "alice"}, Session: "c1"})
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if pod.TTY != tty || pod.Plain != plain {
		t.Errorf("claimed pod has streams %v, %v; want the prepared ones", pod.TTY, pod.Plain)
	}
	if tty.closed.Load() || plain.closed.Load() {
		t.Errorf("prepared streams closed (tty %t, plain %t) although this replica claimed the pod", tty.closed.Load(), plain.closed.Load())
	}
	if isTaken(p, "a") {
		t.Error("pod a is still taken after the watch showed the claim and the PATCH returned")
	}
}

// TestClaimedPodStaysTakenUntilWatchShowsIt: when the PATCH returns before
// the watch shows the claim, the cache still lists the pod as idle, so it
// must stay out of the candidates until the watch catches up.
func TestClaimedPodStaysTakenUntilWatchShowsIt(t *testing.T) {
	prof := unitProfile(t)
	a := idleReadyPod("a", prof)
	p := newUnitPool(t, fake.NewClientset(a), prof)
	if !p.reserve("a") {
		t.Fatal("reserving a failed")
	}
	p.claimed(prof, a, true)
	for _, c := range p.candidates(prof) {
		if c.Name == "a" {
			t.Fatal("pod a, claimed but not yet seen claimed by the watch, is a candidate again")
		}
	}
	claimed := a.DeepCopy()
	claimed.Labels[LabelState] = StateClaimed
	claimed.Labels[LabelOwner] = "r1"
	p.onPod(claimed, true)
	if isTaken(p, "a") {
		t.Error("pod a is still taken after the watch showed the claim")
	}
}

// isTaken reports whether the pool holds a local reservation for name.
func isTaken(p *Pool, name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.taken[name]
	return ok
}

// TestStreamsClosedWhenClaimedElsewhere: a pod another replica claims, or
// one this replica is not claiming, loses its prepared streams at once, so
// no wrapper waits in a pod that is now somebody else's.
func TestStreamsClosedWhenClaimedElsewhere(t *testing.T) {
	prof := unitProfile(t)
	a, b := idleReadyPod("a", prof), idleReadyPod("b", prof)
	p := newUnitPool(t, fake.NewClientset(a, b), prof)
	for _, c := range []struct {
		name, owner string
		reserved    bool
	}{
		{"a", "r2", true}, // reserved here, but the other replica won it
		{"b", "r1", false},
	} {
		tty, plain := giveStreams(p, c.name)
		if c.reserved && !p.reserve(c.name) {
			t.Fatalf("reserving %s failed", c.name)
		}
		pod := a.DeepCopy()
		if c.name == "b" {
			pod = b.DeepCopy()
		}
		pod.Labels[LabelState] = StateClaimed
		pod.Labels[LabelOwner] = c.owner
		p.onPod(pod, true)
		if !tty.closed.Load() || !plain.closed.Load() {
			t.Errorf("pod %s claimed by %s (reserved here %t): streams closed tty %t plain %t, want both closed",
				c.name, c.owner, c.reserved, tty.closed.Load(), plain.closed.Load())
		}
		p.mu.Lock()
		left := p.prepared[c.name]
		p.mu.Unlock()
		if left != nil {
			t.Errorf("pod %s still has a prepared-streams entry", c.name)
		}
	}
}

// TestPreparedCountSkipsPlaceholders: podgate_pool_prepared_pods counts the
// pods a claim can attach to without a new exec, so a placeholder for
// streams still opening must not count.
func TestPreparedCountSkipsPlaceholders(t *testing.T) {
	p := newUnitPool(t, fake.NewClientset(), unitProfile(t))
	p.mu.Lock()
	p.prepared["opening"] = &streams{uid: "1"}
	p.prepared["tty-only"] = &streams{uid: "2", tty: &fakePrepared{tty: true}}
	p.prepared["both"] = &streams{uid: "3", tty: &fakePrepared{tty: true}, plain: &fakePrepared{}}
	p.mu.Unlock()
	if got := p.preparedCount(); got != 2 {
		t.Errorf("preparedCount() = %v, want 2", got)
	}
}
