package pool

import "time"

// health tracks whether a profile can start pods, and when the replenisher
// may try again. It is plain data: the pool keeps one per profile under its
// mutex and feeds it what the informer shows, so that every replica reaches
// the same verdict while only the leader acts on it.
//
// Rules: a failure doubles the wait before the next creation, from base up
// to max; while degraded, or before any pod of the current template became
// Ready, the replenisher runs one probe pod at a time instead of filling the
// pool. So a broken template costs at most one pod per backoff period and
// the pool never churns.
type health struct {
	// hash is the template the verdict is about; a new template starts
	// from scratch.
	hash string
	// proven is true once a pod of this template became Ready.
	proven   bool
	failures int
	// last is the most recent failure; Reason is empty when healthy.
	last    failure
	retryAt time.Time
}

// reset starts over for a new template.
func (h *health) reset(hash string) {
	*h = health{hash: hash}
}

// fail records a pod that cannot start and pushes back the next creation.
func (h *health) fail(now time.Time, f failure, base, ceiling time.Duration) {
	h.failures++
	h.last = f
	d := base
	for i := 1; i < h.failures && d < ceiling; i++ {
		d *= 2
	}
	h.retryAt = now.Add(min(d, ceiling))
}

// ready records a pod of the template that became Ready.
func (h *health) ready() {
	h.proven = true
	h.failures = 0
	h.last = failure{}
	h.retryAt = time.Time{}
}

// degraded reports whether the most recent pod of the template failed.
func (h *health) degraded() bool { return h.last.Reason != "" }

// mayCreate reports whether the backoff allows a creation now.
func (h *health) mayCreate(now time.Time) bool { return !now.Before(h.retryAt) }

// cautious reports whether only one probe pod may be in flight.
func (h *health) cautious() bool { return !h.proven || h.degraded() }
