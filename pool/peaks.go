package pool

import (
	"time"

	"github.com/podgate/podgate/pool/profile"
)

// Scheduled peaks. A classroom knows when it starts: a profile may declare
// its peaks (podgate.io/peaks, profile.Peak), and the pool is warm at the
// declared size when each begins, instead of learning of it from the first
// hundred logins.
//
// Rule: from a lead time before each activation of a peak's schedule until
// peakHold after it, the sizer's target is at least the peak's size (within
// the pool's bounds; see sizer). The lead is the time the node takes to
// start that many pods: one start time T plus size / capacity (size × T,
// one at a time, while the capacity is unknown), and at least peakMinLead.
// After peakHold the target shrinks at the sizer's usual slow pace, so a
// peak that runs long keeps its pods while its logins keep coming.
const (
	peakHold    = 10 * time.Minute
	peakMinLead = 2 * time.Minute
)

// peakLead is the lead time for a peak of size (see the rule).
func peakLead(size int, start time.Duration, capacity float64) time.Duration {
	fill := time.Duration(size) * start
	if capacity > 0 {
		fill = time.Duration(float64(size) / capacity * float64(time.Second))
	}
	return max(peakMinLead, start+fill)
}

// peakFloor is the largest size among the peaks due at now: those with an
// activation within (now - peakHold, now + their lead].
func peakFloor(peaks []profile.Peak, now time.Time, start time.Duration, capacity float64) int {
	floor := 0
	for _, pk := range peaks {
		next := pk.Schedule.Next(now.Add(-peakHold))
		// A schedule that never fires (30 February) gives the zero time.
		if !next.IsZero() && !next.After(now.Add(peakLead(pk.Size, start, capacity))) {
			floor = max(floor, pk.Size)
		}
	}
	return floor
}
