package scheduler

import (
	"context"
	"errors"
	"time"
)

// Reconnects. A connection-mode pod whose connection closes is parked in the
// cluster, not in this replica's memory: Parking (package pool) puts the
// state (parked), the user's key (UserKey) and the time it is kept until on
// the pod itself. Any replica's informer finds it by the key, a reconnect
// through any replica (or a restarted one) claims it with a conditional
// write, so exactly one login gets it, and the leader deletes it once its
// time has passed.

// ReconnectResult is what became of a user's parked pod: the label of
// podgate_reconnects_total, and what the user is told on login.
type ReconnectResult string

const (
	// ReconnectNone: nothing was parked for the user, a first login (or
	// one long after the leader deleted the parked pod).
	ReconnectNone ReconnectResult = ""
	// ReconnectSamePod: the reconnect took the parked pod back.
	ReconnectSamePod ReconnectResult = "same_pod"
	// ReconnectExpired: the parked pod's window had passed.
	ReconnectExpired ReconnectResult = "expired"
	// ReconnectDeleted: the parked pod was gone, failed or not Ready.
	ReconnectDeleted ReconnectResult = "deleted"
	// ReconnectOverLimit: the pod was not parked, because keeping it would
	// have left the user holding more than the per-user limit.
	ReconnectOverLimit ReconnectResult = "over_limit"
)

// ErrParkOverLimit is Parking.Park's refusal to keep a pod that would leave
// its user over the profile's per-user limit; the pod is released instead.
var ErrParkOverLimit = errors.New("user at the per-user pod limit")

// Parking keeps connection-mode pods for their users' reconnects, in the
// cluster. Package pool implements it.
type Parking interface {
	// Park turns a pod this replica holds into a parked pod of c.UserKey,
	// kept until until. heldHere is how many other pods of the key this
	// replica holds; with them and the pods other replicas hold or have
	// parked under the key, keeping this one must not exceed the profile's
	// per-user limit, or Park fails with ErrParkOverLimit. Any other
	// failure leaves the pod to the caller, who releases it. A user has at
	// most one parked pod per profile: an older one is deleted.
	Park(ctx context.Context, pod *Pod, c Claim, until time.Time, heldHere int) error
	// Unpark claims for c a pod parked under c.UserKey in the profile,
	// with a conditional write; of two logins taking one pod, one wins.
	// It returns nil and why there was none to take (ReconnectNone when
	// nothing was parked) when no pod is returned.
	Unpark(ctx context.Context, profile string, c Claim) (*Pod, ReconnectResult, error)
	// UserPods counts the pods under key that this replica does not hold:
	// parked ones, and those claimed by other replicas (or an earlier run
	// of this one), as this replica's informer cache shows them.
	UserPods(key string) int
}

// parkTimeout bounds the write that parks a pod.
const parkTimeout = 10 * time.Second

// window is the profile's reconnect window, within the operator's bound.
func (s *Scheduler) window(pol Policy) time.Duration {
	w := pol.ReconnectWindow
	if s.parking == nil || pol.Mode != ModeConnection {
		return 0
	}
	if m := s.opts.MaxReconnectWindow; m > 0 && w > m {
		w = m
	}
	return w
}

// park keeps a connection-mode pod for its user's reconnect window. It
// reports false when the pod should be released instead (no window, over
// the user's limit, or the write failed). heldHere counts the user's other
// pods on this replica.
func (s *Scheduler) park(id Identity, pol Policy, key string, pod *Pod, heldHere int) bool {
	window := s.window(pol)
	if window <= 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), parkTimeout)
	defer cancel()
	until := s.clock.Now().Add(window)
	err := s.parking.Park(ctx, pod, Claim{Identity: id, UserKey: key, Session: id.ConnID}, until, heldHere)
	if err != nil {
		s.log.Info("not parking pod", "user", id.User, "profile", pol.Name, "pod", pod.Ref.Name, "conn", id.ConnID, "err", err)
		return false
	}
	s.log.Info("parked pod", "user", id.User, "profile", pol.Name, "pod", pod.Ref.Name, "conn", id.ConnID,
		"until", until.UTC().Format(time.RFC3339))
	return true
}

// unpark takes the pod parked for exactly this user and profile (the key is
// UserKey over the canonical user and the resolved profile, so no other
// user, nor the same user's other profiles, reach it). It returns nil, and
// why, when there is none; a failure to look is logged and costs the user
// only their old pod.
func (s *Scheduler) unpark(ctx context.Context, id Identity, pol Policy, key string) (*Pod, ReconnectResult) {
	if s.window(pol) <= 0 {
		return nil, ReconnectNone
	}
	wctx, cancel := context.WithTimeout(ctx, parkTimeout)
	s.parks.wait(wctx, key)
	cancel()
	pod, res, err := s.parking.Unpark(ctx, pol.Name, Claim{Identity: id, UserKey: key, Session: id.ConnID})
	if err != nil {
		s.log.Warn("taking a parked pod failed; giving a new one", "user", id.User, "profile", pol.Name, "conn", id.ConnID, "err", err)
		return nil, ReconnectDeleted
	}
	return pod, res
}
