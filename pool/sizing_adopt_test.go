package pool

import (
	"testing"
	"time"
)

// TestSizerAdopt: a new leader takes the pool it finds as its target,
// within the bounds, and never lowers a target it already has.
func TestSizerAdopt(t *testing.T) {
	t0 := time.Unix(1000, 0)
	cases := []struct {
		lo, hi, target, idle, want int
	}{
		{lo: 3, hi: 30, target: 3, idle: 9, want: 9}, // grown by the previous leader: kept
		{lo: 3, hi: 30, target: 3, idle: 1, want: 3}, // below min: min
		{lo: 3, hi: 5, target: 3, idle: 9, want: 5},  // above max: max
		{lo: 0, hi: 10, target: 6, idle: 2, want: 6}, // never lowered
		{lo: 2, hi: 10, target: 2, idle: 2, want: 2}, // unchanged
	}
	for _, c := range cases {
		s := newSizer(c.lo, c.hi, t0)
		s.target = c.target
		s.adopt(c.idle, t0.Add(time.Minute))
		if s.target != c.want {
			t.Errorf("lo %d hi %d target %d, adopt(%d) = %d, want %d", c.lo, c.hi, c.target, c.idle, s.target, c.want)
		}
	}
	// An adopted target shrinks at the usual pace, counted from adoption.
	s := newSizer(3, 30, t0)
	s.adopt(9, t0.Add(time.Hour))
	s.tick(t0.Add(time.Hour+9*time.Minute), 10*time.Minute)
	if s.target != 9 {
		t.Errorf("shrank %v after adoption: target %d", 9*time.Minute, s.target)
	}
	s.tick(t0.Add(time.Hour+10*time.Minute), 10*time.Minute)
	if s.target != 8 {
		t.Errorf("after 10m: target %d, want 8", s.target)
	}
}

// TestSizerAdoptInherited: a restarted replica that leads soon after
// deleting its earlier run's reserved pods counts them as part of the pool
// it inherits (their deletions may reach its cache before it leads), once;
// long after, it does not (another leader has sized the pool since).
func TestSizerAdoptInherited(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := newSizer(8, 40, t0)
	for range 18 {
		s.inherit(t0)
	}
	s.adopt(1, t0.Add(2*time.Second))
	if s.target != 19 {
		t.Errorf("adopt soon after the restart: target %d, want 19 (1 spare + 18 deleted)", s.target)
	}
	s.target = 8
	s.adopt(1, t0.Add(3*time.Second))
	if s.target != 8 {
		t.Errorf("the inherited pods counted twice: target %d, want 8", s.target)
	}

	late := newSizer(8, 40, t0)
	for range 18 {
		late.inherit(t0)
	}
	late.adopt(1, t0.Add(inheritWindow+time.Second))
	if late.target != 8 {
		t.Errorf("adopt long after the restart: target %d, want min 8", late.target)
	}
}
