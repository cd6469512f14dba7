package pool

import (
	"testing"
	"time"
)

// A short lease (as tests and small clusters use) must still give client-go
// a valid election: renew deadline below the lease, a positive retry.
// Before this, a 5s lease kept a fixed 10s renew deadline and the elector
// never started.
func TestOptionsDefaultsFollowLeaseDuration(t *testing.T) {
	for _, lease := range []time.Duration{3 * time.Second, 5 * time.Second, 15 * time.Second, time.Minute} {
		o := Options{LeaderLeaseDuration: lease}
		o.setDefaults()
		if o.LeaderRenewDeadline >= o.LeaderLeaseDuration || o.LeaderRetryPeriod <= 0 || o.LeaderRetryPeriod >= o.LeaderRenewDeadline {
			t.Errorf("lease %v: renew %v, retry %v is not a valid election", lease, o.LeaderRenewDeadline, o.LeaderRetryPeriod)
		}
	}
}
