package pool

import "time"

// sizer decides a profile's idle target between its pool min and max.
//
// Rule: every miss (a user who had to wait for a cold pod) raises the target
// by one, so the next user finds a warm pod; after shrinkAfter without a
// miss, the target drops by one, and again after every further shrinkAfter,
// back down to min. Growth is fast and shrinking slow, because a miss costs a
// user seconds while an idle pod costs only a little memory.
type sizer struct {
	lo, hi int
	target int
	// lastChange is the last miss or shrink; shrinking counts from it.
	lastChange time.Time
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

// miss grows the target.
func (s *sizer) miss(now time.Time) {
	s.target = min(s.target+1, s.hi)
	s.lastChange = now
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
