package pool

import (
	"math"
	"slices"
	"time"
)

// Demand model. The pool needs enough idle pods to cover the claims that
// arrive while a replacement starts: rate × start time. Growing on misses
// alone overshoots under sustained load: every miss raised the target by
// one whatever the demand, so a node that fell behind was asked for ever
// more pods, which started ever more slowly (44 s per pod at 3 logins/s on
// a 2-CPU node, with the target climbing to the pool max), and no later
// user found an idle pod. A miss now raises the target only up to a
// ceiling taken from the claims seen recently and how long pods took to
// start.
const (
	// rateWindow is how far back claims count towards the claim rate.
	rateWindow = 30 * time.Second
	// rateFloor is the shortest span a rate is taken over, so that a
	// handful of claims at once is not read as an endless stream.
	rateFloor = 5 * time.Second
	// startSamples is how many recent pod starts the start time is the
	// median of.
	startSamples = 15
	// defaultStart stands in for the start time until a pod has been seen
	// starting.
	defaultStart = 2 * time.Second
	// headroom multiplies rate × start time, so that random arrivals
	// (which bunch up) still find a pod in all but rare cases.
	headroom = 2
)

// sizer decides a profile's idle target between its pool min and max.
//
// Rule: every miss (a user who had to wait for a cold pod) raises the target
// by one, so the next user finds a warm pod, up to the demand ceiling (see
// ceiling); after shrinkAfter without a miss, the target drops by one, and
// again after every further shrinkAfter, back down to min. Growth is fast
// and shrinking slow, because a miss costs a user seconds while an idle pod
// costs only a little memory.
type sizer struct {
	lo, hi int
	target int
	// lastChange is the last miss or shrink; shrinking counts from it.
	lastChange time.Time
	// claims are when claims (hits and misses) were seen within
	// rateWindow, oldest first.
	claims []time.Time
	// starts are the last startSamples pod start times.
	starts []time.Duration
	// burstSince is when the current burst was first seen; zero when
	// none (see holdRefill).
	burstSince time.Time
}

// newSizer starts at the lower bound.
func newSizer(lo, hi int, now time.Time) *sizer {
	return &sizer{lo: lo, hi: hi, target: lo, lastChange: now}
}

// setBounds applies a profile change, keeping the target inside the bounds.
func (s *sizer) setBounds(lo, hi int) {
	s.lo, s.hi = lo, hi
	s.target = max(lo, min(s.target, hi))
}

// hit records a claim that found an idle pod.
func (s *sizer) hit(now time.Time) {
	s.claims = append(s.claims, now)
	s.forget(now)
}

// forget drops the claims older than rateWindow.
func (s *sizer) forget(now time.Time) {
	i := 0
	for i < len(s.claims) && now.Sub(s.claims[i]) > rateWindow {
		i++
	}
	s.claims = s.claims[i:]
}

// miss records a claim that found none, and grows the target by one up to
// the demand ceiling. Jumping to the ceiling at once was tried: at 1.5
// logins/s it asked the node for 34 more pods in one go, which, on top of
// the logins, took it past what it could start, and the hit ratio after
// 15 s fell from 66 to 44 %.
func (s *sizer) miss(now time.Time) {
	s.claims = append(s.claims, now)
	s.target = max(s.target, min(s.target+1, s.ceiling(now)))
	s.lastChange = now
}

// started records how long a pod took from its first sighting to Ready.
func (s *sizer) started(d time.Duration) {
	if len(s.starts) == startSamples {
		s.starts = s.starts[1:]
	}
	s.starts = append(s.starts, d)
}

// ceiling is the most idle pods recent demand calls for: the pool min plus
// headroom × the claim rate over the last rateWindow × the median start
// time, within the bounds.
func (s *sizer) ceiling(now time.Time) int {
	s.forget(now)
	if len(s.claims) == 0 {
		return s.lo
	}
	span := max(rateFloor, min(rateWindow, now.Sub(s.claims[0])))
	rate := float64(len(s.claims)) / span.Seconds()
	need := int(math.Ceil(rate * s.startTime().Seconds() * headroom))
	return max(s.lo, min(s.hi, s.lo+need))
}

// startTime is the median of the recent pod starts.
func (s *sizer) startTime() time.Duration {
	if len(s.starts) == 0 {
		return defaultStart
	}
	sorted := slices.Clone(s.starts)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}

// tick shrinks the target when demand has been quiet for long enough.
func (s *sizer) tick(now time.Time, shrinkAfter time.Duration) {
	if s.target > s.lo && now.Sub(s.lastChange) >= shrinkAfter {
		s.target--
		s.lastChange = now
	}
}

// adopt raises the target to the idle pods a new leader finds (within the
// bounds): the previous leader sized the pool from misses this replica may
// not have counted (a restarted replica takes the cold pods it lists at
// start-up as old news), and a failover must neither trim a pool the
// previous leader grew nor grow it. Shrinking then goes on at the usual
// slow pace.
func (s *sizer) adopt(idle int, now time.Time) {
	if t := max(s.lo, min(idle, s.hi)); t > s.target {
		s.target = t
		s.lastChange = now
	}
}

// Refill pacing. A burst's logins need the CPUs for their exec starts (the
// API server, the kubelet, containerd and each guest's shell), and starting
// their replacement pods at the same moment takes the same CPUs (runc, the
// CNI plugin, the kubelet, containerd). So while a burst lasts the leader
// holds back replacements: from the moment burstClaims claims arrived within
// burstWindow, until burstQuiet passes with no claim, and never longer than
// burstHold. Steady logins (fewer than burstClaims a second) are not held.
const (
	burstClaims = 10
	burstQuiet  = time.Second
	burstHold   = 5 * time.Second
)

// holdRefill reports whether replacements are held back now.
func (s *sizer) holdRefill(now time.Time) bool {
	n := len(s.claims)
	if n == 0 || now.Sub(s.claims[n-1]) >= burstQuiet {
		s.burstSince = time.Time{}
		return false
	}
	if s.burstSince.IsZero() {
		last, k := s.claims[n-1], 0
		for i := n - 1; i >= 0 && last.Sub(s.claims[i]) < burstWindow; i-- {
			k++
		}
		if k < burstClaims {
			return false
		}
		s.burstSince = now
	}
	return now.Sub(s.burstSince) < burstHold
}
