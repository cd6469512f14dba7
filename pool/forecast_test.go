package pool

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// TestForecastFor pins the demand model: S = ceil(mu + 2.33 × sqrt(mu)),
// mu = rate × T, the rate capped at a known capacity.
func TestForecastFor(t *testing.T) {
	cases := []struct {
		rate, capacity float64
		start          time.Duration
		need           int
		overloaded     bool
	}{
		{rate: 0, start: 2 * time.Second, need: 0},
		{rate: 1, start: 2 * time.Second, need: 6},                                // mu 2: 2 + 3.30
		{rate: 1, start: 8 * time.Second, need: 15},                               // mu 8: 8 + 6.59
		{rate: 10, start: 2 * time.Second, need: 31},                              // mu 20: 20 + 10.42
		{rate: 1, capacity: 1.5, start: 2 * time.Second, need: 6},                 // below capacity: uncapped
		{rate: 3, capacity: 1, start: 4 * time.Second, need: 9, overloaded: true}, // mu 4, not 12: 4 + 4.66
	}
	for _, c := range cases {
		f := forecastFor(c.rate, c.capacity, c.start)
		if f.Need != c.need || f.Overloaded != c.overloaded {
			t.Errorf("forecastFor(%g/s, capacity %g/s, %v) = need %d overloaded %v, want %d %v",
				c.rate, c.capacity, c.start, f.Need, f.Overloaded, c.need, c.overloaded)
		}
	}
}

// steady feeds s one hit every 1/rate seconds for d, ticking every second
// on the fake clock, and returns the highest target seen.
func steady(s *sizer, clk *clocktesting.FakeClock, rate float64, d, shrinkAfter time.Duration) int {
	every := time.Duration(float64(time.Second) / rate)
	end := clk.Now().Add(d)
	next := clk.Now()
	peak := s.target
	for clk.Now().Before(end) {
		for !next.After(clk.Now()) {
			s.hit(next)
			next = next.Add(every)
		}
		s.tick(clk.Now(), shrinkAfter)
		peak = max(peak, s.target)
		clk.Step(time.Second)
	}
	return peak
}

// TestSizerRateStepUp: when the claim rate steps up, the target grows to
// the new forecast from hits alone, before any miss, and no further.
func TestSizerRateStepUp(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	s := newSizer(2, 100, clk.Now())
	for range startSamples {
		s.started(4 * time.Second)
	}
	// 0.5/s × 4 s: mu 2, ceil(2 + 3.3) = 6; 7 while the first claims,
	// over the 5 s floor, read as a faster stream.
	if steady(s, clk, 0.5, time.Minute, 10*time.Minute); s.target < 6 || s.target > 7 {
		t.Fatalf("target at 0.5 claims/s = %d, want 6 or 7", s.target)
	}
	// 2/s × 4 s: mu 8, ceil(8 + 6.6) = 15, within fastWindow of the step.
	steady(s, clk, 2, fastWindow, 10*time.Minute)
	if s.target != 15 {
		t.Errorf("target %v after a step to 2 claims/s = %d, want 15", fastWindow, s.target)
	}
	if peak := steady(s, clk, 2, time.Minute, 10*time.Minute); s.target != 15 || peak != 15 {
		t.Errorf("target at 2 claims/s = %d (peak %d), want 15", s.target, peak)
	}
}

// TestSizerRateStepDown: when the rate falls, the target comes down one
// pod per shrinkAfter, to the new forecast and not below it.
func TestSizerRateStepDown(t *testing.T) {
	const shrinkAfter = 10 * time.Minute
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	s := newSizer(2, 100, clk.Now())
	for range startSamples {
		s.started(4 * time.Second)
	}
	// 15 at 2/s × 4 s (see TestSizerRateStepUp), 16 while the first
	// claims read as a faster stream.
	steady(s, clk, 2, time.Minute, shrinkAfter)
	if s.target < 15 || s.target > 16 {
		t.Fatalf("target at 2 claims/s = %d, want 15 or 16", s.target)
	}
	step := clk.Now()
	last, lastAt := s.target, step
	for range 12 * 10 {
		steady(s, clk, 0.5, time.Minute, shrinkAfter)
		if s.target < last {
			if last-s.target > 1 || clk.Now().Sub(lastAt) < shrinkAfter {
				t.Fatalf("%v after the step: target %d → %d since %v", clk.Now().Sub(step), last, s.target, lastAt.Sub(step))
			}
			last, lastAt = s.target, clk.Now()
		}
	}
	// One step per ten minutes down to the forecast of 6 at 0.5/s,
	// which it keeps.
	if s.target != 6 {
		t.Errorf("target two hours after a step down to 0.5 claims/s = %d, want 6", s.target)
	}
}

// TestSizerStartTimeChange: T is the p90 of the last 20 starts: two slow
// starts of twenty do not move it, three do, and the target follows.
func TestSizerStartTimeChange(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	s := newSizer(0, 100, clk.Now())
	if got := s.startTime(); got != defaultStart {
		t.Errorf("start time with no sample = %v, want the default %v", got, defaultStart)
	}
	for range startSamples {
		s.started(2 * time.Second)
	}
	// 1/s × 2 s: ceil(2 + 3.3) = 6, or 7 from the first claims.
	steady(s, clk, 1, time.Minute, 10*time.Minute)
	before := s.target
	if before < 6 || before > 7 {
		t.Fatalf("target at 1 claim/s and 2 s starts = %d, want 6 or 7", before)
	}
	s.started(6 * time.Second)
	s.started(6 * time.Second)
	if steady(s, clk, 1, 5*time.Second, 10*time.Minute); s.startTime() != 2*time.Second || s.target != before {
		t.Errorf("after 2 slow starts of 20: T %v target %d, want 2s and %d", s.startTime(), s.target, before)
	}
	s.started(6 * time.Second)
	// 1/s × 6 s: ceil(6 + 5.7) = 12.
	if steady(s, clk, 1, 5*time.Second, 10*time.Minute); s.startTime() != 6*time.Second || s.target != 12 {
		t.Errorf("after 3 slow starts of 20: T %v target %d, want 6s and 12", s.startTime(), s.target)
	}
	// Twenty fast starts age the slow ones out; the target then shrinks
	// at the usual pace.
	for range startSamples {
		s.started(2 * time.Second)
	}
	if steady(s, clk, 1, 9*time.Minute, 10*time.Minute); s.target != 12 {
		t.Errorf("target 9 min after starts sped up = %d, want still 12", s.target)
	}
	if steady(s, clk, 1, 2*time.Minute, 10*time.Minute); s.target != 11 {
		t.Errorf("target 11 min after starts sped up = %d, want 11", s.target)
	}
}

// TestSizerMissesCorrect: misses still raise the target by one each,
// above the forecast, up to twice it.
func TestSizerMissesCorrect(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	s := newSizer(0, 100, clk.Now())
	for range startSamples {
		s.started(2 * time.Second)
	}
	steady(s, clk, 1, time.Minute, 10*time.Minute)
	before := s.target
	if before < 6 || before > 7 {
		t.Fatalf("target at 1 claim/s = %d, want 6 or 7", before)
	}
	s.miss(clk.Now())
	if s.target != before+1 {
		t.Errorf("target after a miss = %d, want %d", s.target, before+1)
	}
	for range 20 {
		s.miss(clk.Now())
	}
	// 21 more claims make 30 within fastWindow: 3/s × 2 s, ceil(6 + 5.7)
	// = 12; misses stop at twice that.
	if s.target != 24 {
		t.Errorf("target after 21 misses = %d, want 24", s.target)
	}
}

// TestSizerOverload: with demand above a known capacity, the target stops
// at what the node can start within T, however many misses come.
func TestSizerOverload(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	s := newSizer(2, 150, clk.Now())
	for range startSamples {
		s.started(4 * time.Second)
	}
	s.setCapacity(1)
	every := time.Second / 3
	atHalf := 0
	for i := range 180 { // a minute of 3 claims a second, all missing
		at := clk.Now()
		s.miss(at)
		s.tick(at, 10*time.Minute)
		if i == 90 {
			atHalf = s.target
		}
		if i%3 == 2 {
			clk.Step(time.Second - 2*every)
		} else {
			clk.Step(every)
		}
	}
	// Capacity 1/s × 4 s: mu 4, ceil(4 + 4.66) = 9 (and one more from a
	// miss before the rate passed the capacity), not 3/s × 4 s's 21 or
	// twice that; it stopped growing well before the end.
	if f := s.forecast(clk.Now()); !f.Overloaded || s.target < 9 || s.target > 10 || s.target != atHalf {
		t.Errorf("overloaded %v, target %d (%d half way); want overloaded and 9 or 10 throughout", f.Overloaded, s.target, atHalf)
	}
	if got := capacityRatio(s.forecast(clk.Now())); got < 2.9 || got > 3.1 {
		t.Errorf("capacity ratio = %g, want about 3", got)
	}
	// Capacity found to be higher: the target follows demand again.
	s.setCapacity(5)
	s.tick(clk.Now(), 10*time.Minute)
	// 3/s × 4 s: mu 12, 12 + 8.07, 21 or, by the window's edges, 20.
	if f := s.forecast(clk.Now()); f.Overloaded || s.target < 20 || s.target > 21 {
		t.Errorf("with capacity 5/s: overloaded %v, target %d; want not, and 20 or 21", f.Overloaded, s.target)
	}
}
