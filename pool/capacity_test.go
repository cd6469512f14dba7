package pool

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podgate/podgate/pool/profile"
)

// TestCapacityMeter: the capacity is the pods turned Ready per second of
// busy time (pods starting) within the window; idle time does not count,
// and it is unknown with too few starts.
func TestCapacityMeter(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	var c capacityMeter
	if got := c.rate(clk.Now()); got != 0 {
		t.Errorf("rate with nothing seen = %g, want 0 (unknown)", got)
	}
	// 20 s busy with 5 pods starting, one turning Ready every 500 ms
	// (and replaced): 2 pods/s.
	c.setStarting(clk.Now(), 5)
	for range 4 {
		clk.Step(500 * time.Millisecond)
		c.ready(clk.Now())
	}
	if got := c.rate(clk.Now()); got != 0 {
		t.Errorf("rate after 4 starts = %g, want 0 (unknown)", got)
	}
	for range 36 {
		clk.Step(500 * time.Millisecond)
		c.ready(clk.Now())
	}
	if got := c.rate(clk.Now()); got != 2 {
		t.Errorf("rate after 40 starts in 20 s busy = %g, want 2", got)
	}
	// 20 s with nothing starting changes nothing.
	c.setStarting(clk.Now(), 0)
	clk.Step(20 * time.Second)
	if got := c.rate(clk.Now()); got != 2 {
		t.Errorf("rate after 20 s idle = %g, want still 2", got)
	}
	// Then 10 s busy at 1 pod/s: 50 starts in 30 s of busy time.
	c.setStarting(clk.Now(), 3)
	for range 10 {
		clk.Step(time.Second)
		c.ready(clk.Now())
	}
	if got, want := c.rate(clk.Now()), 50.0/30; got != want {
		t.Errorf("rate after a slower spell = %g, want %g", got, want)
	}
	// A minute later, only the window's last minute counts: 30 s busy at
	// 0.5 pods/s after 30 s idle.
	c.setStarting(clk.Now(), 0)
	clk.Step(30 * time.Second)
	c.setStarting(clk.Now(), 1)
	for range 15 {
		clk.Step(2 * time.Second)
		c.ready(clk.Now())
	}
	if got := c.rate(clk.Now()); got != 0.5 {
		t.Errorf("rate over the last minute = %g, want 0.5", got)
	}
}

// TestCapacityRatioMetric: demand's tick measures the capacity from the pod
// starts it was fed, caps the sizer with it and sets
// podgate_pool_capacity_ratio to the claim rate over it (0 while unknown).
func TestCapacityRatioMetric(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	d := newDemand(m, nil, &Options{ShrinkAfter: 10 * time.Minute})
	prof := &profile.Profile{PoolMin: 0, PoolMax: 100}
	prof.Name = "p"
	ratio := func() float64 {
		var out dto.Metric
		if err := m.capacityRatio.WithLabelValues("p").Write(&out); err != nil {
			t.Fatal(err)
		}
		return out.GetGauge().GetValue()
	}
	lock := func(f func()) { d.mu.Lock(); defer d.mu.Unlock(); f() }

	// 15 s of a claim every 2 s while the node turns 1 pod a second
	// Ready, always busy; then 30 s of 3 claims a second, all missing.
	lock(func() { d.capacityLocked("p").setStarting(clk.Now(), 4) })
	var history []int
	for i := range 45 {
		lock(func() {
			sz := d.sizerLocked(prof, clk.Now())
			sz.started(4 * time.Second)
			switch {
			case i >= 15:
				for range 3 {
					sz.miss(clk.Now())
				}
			case i%2 == 0:
				sz.hit(clk.Now())
			}
		})
		pl := d.tick(prof, clk.Now())
		history = append(history, pl.target)
		if i == 5 && ratio() != 0 {
			t.Errorf("ratio before the capacity is known = %g, want 0", ratio())
		}
		if i == 14 && (ratio() < 0.4 || ratio() > 0.6) {
			t.Errorf("ratio at 0.5 claims/s = %g, want about 0.5", ratio())
		}
		clk.Step(time.Second)
		lock(func() { d.capacityLocked("p").ready(clk.Now()) })
	}
	if got := ratio(); got < 2.8 || got > 3.2 {
		t.Errorf("capacity ratio = %g, want about 3", got)
	}
	if got := d.capacity(prof, clk.Now()); got != 1 {
		t.Errorf("capacity = %g, want 1", got)
	}
	// Capped: capacity 1/s × 4 s, ceil(4 + 4.66) = 9, and at most twice
	// that from misses before the rate passed the capacity; far below 3/s
	// × 4 s's 21 and twice that. It stopped growing once overloaded.
	last := history[len(history)-1]
	if last < 9 || last > 18 || history[25] != last {
		t.Errorf("targets under overload = %v, want to stop between 9 and 18", history)
	}
}
