package scheduler

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// park keeps a connection-mode pod for its identity's reconnect window. It
// reports false when the pod should be released instead (no window, or
// shutting down).
func (s *Scheduler) park(id Identity, window time.Duration, pod *Pod) bool {
	if window <= 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown {
		return false
	}
	c := s.parkedLocked(window)
	// A pod already parked for this identity (two connections closed
	// within the window) is removed first, which runs the eviction
	// callback and so releases it: Add on an existing key replaces the
	// value without calling the callback, which would leave the older
	// pod claimed for as long as this replica lives.
	if old, ok := c.Peek(id.Key()); ok {
		old.letGo(fmt.Sprintf("user %q parked a newer pod in its place", id.User))
	}
	c.Remove(id.Key())
	c.Add(id.Key(), &parkedPod{pod: pod, user: id.User, at: s.clock.Now()})
	return true
}

// unpark takes the pod parked for exactly this identity, if it is still
// alive. The key is Identity.Key(), so no other user (or other profile of
// the same user) can reach it.
func (s *Scheduler) unpark(id Identity, pol Policy) *Pod {
	if pol.ReconnectWindow <= 0 {
		return nil
	}
	s.mu.Lock()
	c, ok := s.parked[pol.ReconnectWindow]
	var pp *parkedPod
	if ok {
		// Whoever flips owned first, this reconnect or an expiry
		// racing it, decides the pod's fate.
		if v, found := c.Peek(id.Key()); found && v.owned.CompareAndSwap(false, true) {
			pp = v
			c.Remove(id.Key())
		}
	}
	s.mu.Unlock()
	if pp == nil {
		return nil
	}
	if !s.pools.Alive(pp.pod) {
		s.release(pp.pod, fmt.Sprintf("user %q reconnected, but the parked pod is no longer ready", id.User))
		return nil
	}
	return pp.pod
}

// parkedPod is a pod waiting for its identity to reconnect. owned is set by
// whoever takes it out, a reconnect or the eviction callback, so that exactly
// one of them uses or releases the pod.
type parkedPod struct {
	pod   *Pod
	user  string
	at    time.Time // when it was parked
	owned atomic.Bool
	// why is set by whoever removes the entry on purpose (a newer pod of
	// the same identity, shutdown), for the released pod's Event; nil
	// for an expiry or an eviction by size.
	why atomic.Pointer[string]
}

// letGo says why the entry is about to be removed; the first reason wins.
func (pp *parkedPod) letGo(why string) { pp.why.CompareAndSwap(nil, &why) }

// releaseReason says why a parked pod is being released.
func (s *Scheduler) releaseReason(pp *parkedPod, window time.Duration) string {
	if why := pp.why.Load(); why != nil {
		return *why
	}
	if s.clock.Since(pp.at) >= window {
		return fmt.Sprintf("user %q did not reconnect within %s", pp.user, window)
	}
	return fmt.Sprintf("more than %d pods were parked; the oldest went first", s.opts.MaxParked)
}

// parkedLocked returns the LRU for one window length, creating it on first
// use.
func (s *Scheduler) parkedLocked(window time.Duration) *expirable.LRU[string, *parkedPod] {
	if c, ok := s.parked[window]; ok {
		return c
	}
	c := expirable.NewLRU(s.opts.MaxParked, func(_ string, pp *parkedPod) {
		// Called on expiry, on eviction by size or a newer entry, on
		// Purge and on Remove; a reconnect that took the pod already
		// owns it. It runs under the LRU's lock, so it must not take
		// s.mu: release only starts a goroutine.
		if pp.owned.CompareAndSwap(false, true) {
			s.release(pp.pod, s.releaseReason(pp, window))
		}
	}, window)
	s.parked[window] = c
	return c
}
