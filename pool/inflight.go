package pool

import (
	"sync"
	"time"
)

// pendingTTL bounds how long a created pod that never showed up in the
// cache still counts as in flight.
const pendingTTL = 30 * time.Second

// expectations are changes the leader has asked the API server for and its
// cache does not show yet, as Kubernetes controllers and agent-sandbox keep
// them. The pool keeps two: pods being created (named before the call, so
// that the cache's first sighting of the name settles it), and idle pods
// being relabelled reserved (settled when the cache shows them no longer
// idle). A pass counts them alongside what the cache shows, so that a pod
// is never counted nowhere, which would make the leader create, or
// relabel, one too many. Its lock is a leaf.
type expectations struct {
	// mu protects the maps below.
	mu sync.Mutex
	// byName holds each pod asked for (or being asked for) until the
	// cache shows the change, the call fails, or pendingTTL passes.
	byName map[string]expectation
	// calls counts calls in flight, per profile.
	calls map[string]int
}

// expectation is one pod in flight: its profile, the replica it is
// created or relabelled reserved for ("" for an idle pod), and when it was
// asked for.
type expectation struct {
	profile, owner string
	at             time.Time
}

func newExpectations() *expectations {
	return &expectations{byName: map[string]expectation{}, calls: map[string]int{}}
}

// begin records a change about to be asked for.
func (c *expectations) begin(name string, cr expectation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byName[name] = cr
	c.calls[cr.profile]++
}

// finished records the end of a call; a change that was never made is no
// longer in flight.
func (c *expectations) finished(name, profile string, created bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls[profile]--; c.calls[profile] <= 0 {
		delete(c.calls, profile)
	}
	if !created {
		delete(c.byName, name)
	}
}

// seen records that the cache shows the change.
func (c *expectations) seen(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byName, name)
}

// inFlight returns the profile's pods in flight, by name, dropping those
// older than pendingTTL, and its calls in flight. Taken before the
// cache is read, every pod the cache does not show after it is still in
// flight; see replenish.
func (c *expectations) inFlight(profile string, now time.Time) (map[string]expectation, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]expectation{}
	for name, cr := range c.byName {
		switch {
		case now.Sub(cr.at) > pendingTTL:
			delete(c.byName, name)
		case cr.profile == profile:
			out[name] = cr
		}
	}
	return out, c.calls[profile]
}

// count is how many of the profile's pods are in flight, for start slots.
func (c *expectations) count(profile string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, cr := range c.byName {
		if cr.profile == profile {
			n++
		}
	}
	return n
}

// deletions are the pods the leader asked to delete, until they leave the
// cache, so that repeated passes do not repeat the call, and so that this
// replica never claims a pod it is deleting. It tells the pod index of
// each change under its lock, so that the two never disagree: lock order
// deletions.mu, then podIndex.mu.
type deletions struct {
	mu    sync.Mutex // protects names
	names map[string]struct{}
	index *podIndex
}

func newDeletions(index *podIndex) *deletions {
	return &deletions{names: map[string]struct{}{}, index: index}
}

// start marks name as being deleted; false when it already is.
func (d *deletions) start(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, busy := d.names[name]; busy {
		return false
	}
	d.names[name] = struct{}{}
	d.index.setDeleting(name, true)
	return true
}

// forget ends the mark: the pod left the cache, or the delete was refused
// and the next pass decides again.
func (d *deletions) forget(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, busy := d.names[name]; busy {
		delete(d.names, name)
		d.index.setDeleting(name, false)
	}
}

// has reports whether name is being deleted.
func (d *deletions) has(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.names[name]
	return ok
}

// has reports whether name is in flight.
func (c *expectations) has(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.byName[name]
	return ok
}
