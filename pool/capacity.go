package pool

import "time"

// Capacity: how fast the cluster turns a profile's new pods Ready under the
// current load, as the pool's own pod events show it. Demand above it is
// overload: asking for more pods only queues them behind the others and
// slows every start (sizing.go caps its forecast at it), users then wait in
// line (wait.go tells them where they stand and for about how long), and
// podgate_pool_capacity_ratio shows demand against it.
//
// Rule: capacity = pods turned Ready within capacityWindow / the time
// within capacityWindow during which at least one of the profile's pods was
// starting (created and not yet Ready). Idle time does not count: a node
// with nothing to start shows no rate at all, not a low one. So a busy node
// shows the rate it can sustain, and a lightly loaded one shows at least
// the rate it was asked for (a lower bound on what it could do), which
// keeps the demand/capacity ratio at or below 1 when demand is met. The
// estimate is unknown (0) until capacityMinReadies starts and
// capacityMinBusy of busy time are within the window.
const (
	capacityWindow     = time.Minute
	capacityMinReadies = 10
	capacityMinBusy    = 5 * time.Second
)

// span is a stretch of time, [from, to).
type span struct{ from, to time.Time }

// capacityMeter is one profile's capacity estimate. It is plain data;
// demand keeps one per profile under its lock and feeds it the count of
// starting pods and their Ready transitions.
type capacityMeter struct {
	// readies are when starting pods turned Ready, oldest first, within
	// capacityWindow.
	readies []time.Time
	// busy are the stretches, oldest first, during which pods were
	// starting, within capacityWindow; contiguous ones are merged.
	busy []span
	// starting is how many pods are starting since since.
	starting int
	since    time.Time
}

// setStarting records that n pods are starting from now on.
func (c *capacityMeter) setStarting(now time.Time, n int) {
	c.account(now)
	c.starting = n
}

// ready records a starting pod that turned Ready.
func (c *capacityMeter) ready(now time.Time) {
	c.readies = append(c.readies, now)
}

// account closes the stretch since the last change: busy when pods were
// starting.
func (c *capacityMeter) account(now time.Time) {
	if c.starting > 0 && !c.since.IsZero() && now.After(c.since) {
		if n := len(c.busy); n > 0 && c.busy[n-1].to.Equal(c.since) {
			c.busy[n-1].to = now
		} else {
			c.busy = append(c.busy, span{c.since, now})
		}
	}
	c.since = now
}

// forget drops what lies before the window.
func (c *capacityMeter) forget(now time.Time) {
	from := now.Add(-capacityWindow)
	i := 0
	for i < len(c.readies) && !c.readies[i].After(from) {
		i++
	}
	c.readies = c.readies[i:]
	j := 0
	for j < len(c.busy) && !c.busy[j].to.After(from) {
		j++
	}
	c.busy = c.busy[j:]
	if len(c.busy) > 0 && c.busy[0].from.Before(from) {
		c.busy[0].from = from
	}
}

// rate applies the rule above: pods per second, 0 when unknown.
func (c *capacityMeter) rate(now time.Time) float64 {
	c.account(now)
	c.forget(now)
	var busy time.Duration
	for _, b := range c.busy {
		busy += b.to.Sub(b.from)
	}
	if len(c.readies) < capacityMinReadies || busy < capacityMinBusy {
		return 0
	}
	return float64(len(c.readies)) / busy.Seconds()
}

// capacityRatio is demand against capacity for the metric: 0 while the
// capacity is unknown.
func capacityRatio(f forecast) float64 {
	if f.Capacity <= 0 {
		return 0
	}
	return f.Rate / f.Capacity
}
