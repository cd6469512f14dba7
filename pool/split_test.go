package pool

import (
	"maps"
	"testing"
	"time"
)

// TestSplitTarget checks the split's rules one by one.
func TestSplitTarget(t *testing.T) {
	for _, c := range []struct {
		name       string
		target     int
		claimants  []claimant
		cap        int
		shares     map[string]int
		unreserved int
	}{
		{"one replica takes all but the remainder", 100, []claimant{{"a", 1}}, 500,
			map[string]int{"a": 95}, 5},
		{"equal wants split evenly", 200, []claimant{{"b", 3}, {"a", 3}}, 500,
			map[string]int{"a": 95, "b": 95}, 10},
		{"a quiet replica beside a busy one holds few", 100, []claimant{{"busy", 40}, {"quiet", 1}}, 500,
			map[string]int{"busy": 93, "quiet": 2}, 5},
		{"the remainder is at least 1 from a target of 2", 2, []claimant{{"a", 1}}, 500,
			map[string]int{"a": 1}, 1},
		{"a target of 1 is reserved whole", 1, []claimant{{"a", 1}}, 500,
			map[string]int{"a": 1}, 0},
		{"a want of 0 counts as 1", 21, []claimant{{"a", 0}, {"b", 0}}, 500,
			map[string]int{"a": 10, "b": 10}, 1},
		{"ties go to the lower replica id", 22, []claimant{{"b", 1}, {"a", 1}}, 500,
			map[string]int{"a": 11, "b": 10}, 1},
		{"a cap spills to the others", 100, []claimant{{"a", 9}, {"b", 1}}, 60,
			map[string]int{"a": 60, "b": 35}, 5},
		{"what no replica may take stays unreserved", 100, []claimant{{"a", 1}, {"b", 1}}, 30,
			map[string]int{"a": 30, "b": 30}, 40},
		{"no replica: everything unreserved", 50, nil, 500, map[string]int{}, 50},
		{"a target of 0", 0, []claimant{{"a", 5}}, 500, map[string]int{"a": 0}, 0},
	} {
		got := splitTarget(c.target, c.claimants, c.cap)
		if !maps.Equal(got.Shares, c.shares) || got.Unreserved != c.unreserved {
			t.Errorf("%s: splitTarget(%d, %v, %d) = %v + %d unreserved, want %v + %d",
				c.name, c.target, c.claimants, c.cap, got.Shares, got.Unreserved, c.shares, c.unreserved)
		}
	}
}

// TestLargestDeficit: new pods go to the replica furthest short of its
// share, ties to the lower id, and to nobody (idle) once all are full.
func TestLargestDeficit(t *testing.T) {
	shares := map[string]int{"a": 5, "b": 5, "c": 2}
	if got := largestDeficit(shares, map[string]int{"a": 4, "b": 1, "c": 0}); got != "b" {
		t.Errorf("largest deficit = %q, want b (4 short)", got)
	}
	if got := largestDeficit(shares, map[string]int{"a": 3, "b": 3, "c": 2}); got != "a" {
		t.Errorf("tie: %q, want a", got)
	}
	if got := largestDeficit(shares, map[string]int{"a": 5, "b": 6, "c": 2}); got != "" {
		t.Errorf("all full: %q, want none", got)
	}
}

// TestWantFollowsBurstAndRate: a replica's want is at least 1, rises to the
// largest burst it served within the burst memory, and follows its login
// rate times the start time.
func TestWantFollowsBurstAndRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var w wantTracker
	if got := w.want(t0, 2*time.Second); got != 1 {
		t.Errorf("want with no logins = %d, want 1", got)
	}
	for i := range 30 {
		w.login(t0.Add(time.Duration(i) * 10 * time.Millisecond))
	}
	if got := w.want(t0.Add(time.Second), 2*time.Second); got != 30 {
		t.Errorf("want right after a burst of 30 = %d, want 30", got)
	}
	if got := w.want(t0.Add(5*time.Minute), 2*time.Second); got != 30 {
		t.Errorf("want 5 minutes after the burst = %d, want 30 (remembered)", got)
	}
	if got := w.want(t0.Add(burstMemory+time.Second), 2*time.Second); got != 1 {
		t.Errorf("want after the burst memory = %d, want 1", got)
	}
	// A steady 1 login/s with pods starting in 2 s: 2 × 1 × 2 = 4.
	var s wantTracker
	for i := range 30 {
		s.login(t0.Add(time.Duration(i) * time.Second))
	}
	if got := s.want(t0.Add(30*time.Second), 2*time.Second); got != 4 {
		t.Errorf("want at 1 login/s = %d, want 4", got)
	}
}
