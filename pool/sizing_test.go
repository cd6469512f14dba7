package pool

import (
	"testing"
	"time"

	"github.com/podgate/podgate/pool/profile"
)

// TestSizerNoGrowKeepsTargetAtMin checks the pool-less configuration: with
// NoGrow, misses leave the idle target at PoolMin (0 here, so no warm pod is
// ever made), while a growing profile raises it by one per miss.
func TestSizerNoGrowKeepsTargetAtMin(t *testing.T) {
	now := time.Unix(1000, 0)
	p := &Pool{sizers: map[string]*sizer{}}
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
