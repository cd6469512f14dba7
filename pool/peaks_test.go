package pool

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podgate/podgate/pool/profile"
)

// TestPeakLead: one start time plus size / capacity, size × T while the
// capacity is unknown, at least two minutes.
func TestPeakLead(t *testing.T) {
	cases := []struct {
		size     int
		start    time.Duration
		capacity float64
		want     time.Duration
	}{
		{40, 2 * time.Second, 0, 2 * time.Minute},     // 82 s
		{40, 4 * time.Second, 0.1, 404 * time.Second}, // 4 s + 400 s
		{100, 5 * time.Second, 0, 505 * time.Second},  // 5 s + 500 s
		{100, 5 * time.Second, 2, 2 * time.Minute},    // 55 s
		{0, time.Second, 0, 2 * time.Minute},
	}
	for _, c := range cases {
		if got := peakLead(c.size, c.start, c.capacity); got != c.want {
			t.Errorf("peakLead(%d, %v, %g) = %v, want %v", c.size, c.start, c.capacity, got, c.want)
		}
	}
}

// TestScheduledPeak: on a fake clock, the pool's target is the peak's size
// from the lead time before it (two minutes here) until peakHold after it
// began, on the days the schedule names, and then shrinks at the usual
// pace; a later, smaller peak does not lower it.
func TestScheduledPeak(t *testing.T) {
	peaks, err := profile.ParsePeaks("0 9 * * 1-5=40; 0 10 * * 1-5=25")
	if err != nil {
		t.Fatal(err)
	}
	prof := &profile.Profile{PoolMin: 2, PoolMax: 50, Peaks: peaks}
	prof.Name = "class"
	// Wednesday 2026-12-02, 08:50 UTC.
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 8, 50, 0, 0, time.UTC))
	d := newDemand(nil, nil, &Options{ShrinkAfter: 10 * time.Minute})
	at := func(h, m, s int) int {
		t.Helper()
		clk.SetTime(time.Date(2026, 12, 2, h, m, s, 0, time.UTC))
		return d.tick(prof, clk.Now()).target
	}
	steps := []struct {
		h, m, s int
		want    int
	}{
		{8, 50, 0, 2},
		{8, 57, 59, 2},
		{8, 58, 0, 40}, // two minutes ahead
		{9, 0, 0, 40},
		{9, 9, 59, 40},
		{9, 10, 0, 39}, // peakHold over; ten minutes since it grew
		{9, 19, 59, 39},
		{9, 20, 0, 38},
		{9, 30, 0, 37},
		{9, 40, 0, 36},
		{9, 50, 0, 35},
		{9, 58, 0, 35}, // the 10:00 peak of 25 is due: no growth, no shrink
		{10, 0, 0, 34},
	}
	for _, st := range steps {
		if got := at(st.h, st.m, st.s); got != st.want {
			t.Errorf("target at %02d:%02d:%02d = %d, want %d", st.h, st.m, st.s, got, st.want)
		}
	}
	// Saturday: no peak.
	d = newDemand(nil, nil, &Options{ShrinkAfter: 10 * time.Minute})
	clk.SetTime(time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC))
	if got := d.tick(prof, clk.Now()).target; got != 2 {
		t.Errorf("target on Saturday at 09:00 = %d, want 2", got)
	}
}
