package pool

import (
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podgate/podgate/pool/profile"
)

// TestSizerNoGrowKeepsTargetAtMin checks the pool-less configuration: with
// NoGrow, misses leave the idle target at PoolMin (0 here, so no warm pod is
// ever made), while a growing profile grows.
func TestSizerNoGrowKeepsTargetAtMin(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newDemand(nil, nil, &Options{})
	cold := &profile.Profile{PoolMin: 0, PoolMax: 10, NoGrow: true}
	cold.Name = "cold"
	warm := &profile.Profile{PoolMin: 0, PoolMax: 10}
	warm.Name = "warm"
	for range 3 {
		p.sizerLocked(cold, now).miss(now)
		p.sizerLocked(warm, now).miss(now)
	}
	if got := p.sizerLocked(cold, now).target; got != 0 {
		t.Errorf("NoGrow target after 3 misses = %d, want 0", got)
	}
	// By the third miss, 3 claims over the 5 s floor, 0.6/s × the default
	// 2 s start: mu 1.2, ceil(1.2 + 2.33 × sqrt(1.2)) = 4, and the miss
	// one more.
	if got := p.sizerLocked(warm, now).target; got != 5 {
		t.Errorf("growing target after 3 misses = %d, want 5", got)
	}
	// Turning NoGrow on later (a profile change) pulls the target back.
	warm.NoGrow = true
	if got := p.sizerLocked(warm, now).target; got != 0 {
		t.Errorf("target after NoGrow was set = %d, want 0", got)
	}
}

// TestOnPodObservesDemand: the pod events feed the sizer: a claimed pod's
// first sighting is a hit, a cold one's a miss, a repeat sighting nothing,
// and a pod's start is timed from its first sighting to Ready. Pods from
// the initial list count for neither.
func TestOnPodObservesDemand(t *testing.T) {
	prof, err := profile.FromConfig(profile.DefaultProfileConfig{Image: "img", PoolMin: 2, PoolMax: 10})
	if err != nil {
		t.Fatal(err)
	}
	p := newUnitPool(t, fake.NewClientset(), prof)
	clk := p.clock.(*clocktesting.FakeClock)
	sz := func() *sizer {
		p.demand.mu.Lock()
		defer p.demand.mu.Unlock()
		return p.demand.sizerLocked(prof, clk.Now())
	}

	starting := idleReadyPod("s", prof)
	starting.Status.Conditions = nil
	p.onPod(starting, true)
	clk.Step(1500 * time.Millisecond)
	p.onPod(idleReadyPod("s", prof), true)
	if got := sz().starts; len(got) != 1 || got[0] != 1500*time.Millisecond {
		t.Errorf("starts after a pod took 1.5 s = %v, want [1.5s]", got)
	}

	hit := idleReadyPod("h", prof)
	hit.Labels[LabelState] = StateClaimed
	p.onPod(hit, true)
	p.onPod(hit.DeepCopy(), true)
	cold := idleReadyPod("c", prof)
	cold.Labels[LabelState] = StateClaimed
	cold.Annotations = map[string]string{AnnCold: "true"}
	p.onPod(cold, true)
	old := idleReadyPod("o", prof)
	old.Labels[LabelState] = StateClaimed
	p.onPod(old, false)
	if got := len(sz().claims); got != 2 {
		t.Errorf("claims seen = %d, want 2 (one hit, one miss)", got)
	}
	// 2 claims over the 5 s floor, 0.4/s × the 1.5 s start: mu 0.6,
	// ceil(0.6 + 2.33 × sqrt(0.6)) = 3 by the forecast, and the miss one
	// more.
	if got := sz().target; got != 4 {
		t.Errorf("target after a hit and a miss = %d, want 4", got)
	}
}

// TestHoldRefillDuringBurst: replacements wait while a burst of claims
// arrives, from its tenth claim within a second until a second passes with
// none, at most five seconds; steady claims are never held.
func TestHoldRefillDuringBurst(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := newSizer(2, 100, t0)
	for i := range 9 {
		s.hit(t0.Add(time.Duration(i) * 50 * time.Millisecond))
	}
	if s.holdRefill(t0.Add(450 * time.Millisecond)) {
		t.Error("held after 9 claims in a second")
	}
	s.hit(t0.Add(500 * time.Millisecond))
	if !s.holdRefill(t0.Add(500 * time.Millisecond)) {
		t.Error("not held after 10 claims in a second")
	}
	if s.holdRefill(t0.Add(1600 * time.Millisecond)) {
		t.Error("still held a second after the last claim")
	}
	// A burst that never pauses is held five seconds at most.
	u := newSizer(2, 1000, t0)
	at := t0
	held := 0 * time.Second
	for range 200 {
		u.hit(at)
		if u.holdRefill(at) {
			held = at.Sub(t0)
		}
		at = at.Add(50 * time.Millisecond)
	}
	if held >= burstHold+time.Second || held < burstHold-time.Second {
		t.Errorf("a ten-second burst was held until %v, want about %v", held, burstHold)
	}
	// Steady: one claim every 200 ms is 5 a second.
	v := newSizer(2, 100, t0)
	for i := range 50 {
		at := t0.Add(time.Duration(i) * 200 * time.Millisecond)
		v.hit(at)
		if v.holdRefill(at) {
			t.Fatalf("steady claims held at claim %d", i)
		}
	}
}
