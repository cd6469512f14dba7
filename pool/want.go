package pool

import (
	"math"
	"time"
)

// A replica's want: how many reserved pods of a profile it asks the leader
// for, published in its liveness Lease (LeaseAnnWant) at every renewal. The
// leader splits the idle target in proportion to the wants (split.go), so a
// want is a weight as much as a count.
//
// Rule: want = max(1, the most logins this replica served within any
// burstWindow over the last burstMemory, headroom × its login rate over
// rateWindow × the profile's pod start time T (sizing.go), rounded up). The burst
// term keeps a replica that was hit by a burst ready for the next one for a
// while; the rate term covers what arrives while a replacement starts, as
// the pool's own sizer does for the whole pool.
const (
	// burstWindow is the span logins count as one burst over.
	burstWindow = time.Second
	// burstMemory is how long a burst keeps raising the want.
	burstMemory = 10 * time.Minute
)

// wantTracker is one profile's demand on this replica. It is plain data;
// demand keeps one per profile under its lock.
type wantTracker struct {
	// logins are this replica's logins within rateWindow, oldest first.
	logins []time.Time
	// bursts are the logins per burstWindow, oldest first, each window
	// starting at its first login; only windows within burstMemory are
	// kept.
	bursts []burst
}

type burst struct {
	start time.Time
	n     int
}

// login records one login (warm or not) served by this replica.
func (w *wantTracker) login(now time.Time) {
	w.logins = append(w.logins, now)
	if n := len(w.bursts); n > 0 && now.Sub(w.bursts[n-1].start) < burstWindow {
		w.bursts[n-1].n++
	} else {
		w.bursts = append(w.bursts, burst{start: now, n: 1})
	}
}

// want applies the rule above; start is the profile's pod start time T.
func (w *wantTracker) want(now time.Time, start time.Duration) int {
	i := 0
	for i < len(w.logins) && now.Sub(w.logins[i]) > rateWindow {
		i++
	}
	w.logins = w.logins[i:]
	j := 0
	for j < len(w.bursts) && now.Sub(w.bursts[j].start) > burstMemory {
		j++
	}
	w.bursts = w.bursts[j:]
	peak := 0
	for _, b := range w.bursts {
		peak = max(peak, b.n)
	}
	byRate := 0
	if len(w.logins) > 0 {
		span := max(rateFloor, min(rateWindow, now.Sub(w.logins[0])))
		rate := float64(len(w.logins)) / span.Seconds()
		byRate = int(math.Ceil(rate * start.Seconds() * headroom))
	}
	return max(1, peak, byRate)
}
