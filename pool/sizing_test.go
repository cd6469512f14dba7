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
// ever made), while a growing profile raises it by one per miss.
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
	if got := p.sizerLocked(warm, now).target; got != 3 {
		t.Errorf("growing target after 3 misses = %d, want 3", got)
	}
	// Turning NoGrow on later (a profile change) pulls the target back.
	warm.NoGrow = true
	if got := p.sizerLocked(warm, now).target; got != 0 {
		t.Errorf("target after NoGrow was set = %d, want 0", got)
	}
}

// TestSizerCeilingFollowsDemand: under a steady stream of misses the target
// stops at what the claim rate and start time call for, instead of
// climbing by one per miss to the pool max; slower starts call for more.
func TestSizerCeilingFollowsDemand(t *testing.T) {
	for _, start := range []time.Duration{2 * time.Second, 5 * time.Second} {
		now := time.Unix(0, 0)
		s := newSizer(5, 150, now)
		for range 5 {
			s.started(start)
		}
		// 60 s of 3 misses a second.
		for i := range 180 {
			s.miss(now.Add(time.Duration(i) * time.Second / 3))
		}
		// The pool min plus 2 × 3/s × start, give or take the rounding
		// of a rate taken over claims that straddle the window's edges.
		need := 2 * 3 * start.Seconds()
		if lo, hi := 5+int(need), 5+int(need*1.05)+1; s.target < lo || s.target > hi {
			t.Errorf("start %v: target after 60 s of 3 misses/s = %d, want %d..%d", start, s.target, lo, hi)
		}
	}
}

// TestSizerHitsCountTowardsDemand: hits are demand too. A lone miss in
// a stream of hits grows the target by one, and only up to the ceiling the
// whole stream calls for.
func TestSizerHitsCountTowardsDemand(t *testing.T) {
	now := time.Unix(0, 0)
	s := newSizer(0, 100, now)
	if s.miss(now); s.target != 1 {
		t.Fatalf("target after a lone miss = %d, want 1", s.target)
	}
	for i := range 30 {
		s.hit(now.Add(time.Duration(i) * time.Second))
	}
	// 41 claims over 30 s, 1.37/s: ceiling ceil(1.37 × 2 s × 2) = 6.
	at := now.Add(30 * time.Second)
	for range 10 {
		s.miss(at)
	}
	if s.target != 6 {
		t.Errorf("target after 10 misses at 1.37 claims/s = %d, want 6", s.target)
	}
	// Claims older than the window no longer count.
	if got := s.ceiling(at.Add(2 * rateWindow)); got != 0 {
		t.Errorf("ceiling after a quiet window = %d, want the min 0", got)
	}
}

// TestSizerStartTimeIsRecentMedian: the start time is the median of the
// last startSamples starts, so one slow start does not move it and old
// ones age out.
func TestSizerStartTimeIsRecentMedian(t *testing.T) {
	s := newSizer(0, 10, time.Unix(0, 0))
	if got := s.startTime(); got != defaultStart {
		t.Errorf("start time with no sample = %v, want the default %v", got, defaultStart)
	}
	s.started(time.Second)
	s.started(time.Minute)
	s.started(time.Second)
	if got := s.startTime(); got != time.Second {
		t.Errorf("median of 1s, 1m, 1s = %v, want 1s", got)
	}
	for range startSamples {
		s.started(3 * time.Second)
	}
	if got := s.startTime(); got != 3*time.Second {
		t.Errorf("start time after %d starts of 3s = %v, want 3s", startSamples, got)
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
	if got := sz().target; got != prof.PoolMin+1 {
		t.Errorf("target after one miss = %d, want %d", got, prof.PoolMin+1)
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
