package scheduler

// Kubernetes Events on guest pods, so that `kubectl describe pod` tells an
// operator the pod's story: who had it, when it was let go, and why the
// pool deleted it. The scheduler records what happens to a login's pod
// (claimed, parked, reconnected, released); the pool what happens to spare
// pods (reaped, and the failures that make a profile degraded).
//
// Every reason any part of podgate records is declared here, so that the
// set an operator may filter on (kubectl get events --field-selector
// reason=...) is in one place.

// EventReason is the CamelCase reason of an Event podgate records on a
// guest pod.
type EventReason string

// The reasons. Notes are short and carry no secrets: a user's name and
// connection id, never keys, passwords or the client's address. client-go
// folds a repeat of one reason on one pod into a series of the first
// Event, whatever the repeat's note says, so a reason that can repeat on a
// pod (Parked, Reconnected) has a note that holds for every repeat.
const (
	// EventClaimed: a login took the pod (warm or cold); the note names
	// the podgate user and the connection (or session) id.
	EventClaimed EventReason = "Claimed"
	// EventParked: the user's connection closed and the pod is kept for
	// their reconnect window.
	EventParked EventReason = "Parked"
	// EventReconnected: the same user came back within the window and
	// got the parked pod.
	EventReconnected EventReason = "Reconnected"
	// EventReleased: the login is done with the pod, which is deleted;
	// the note says why (connection closed, session ended). A parked pod
	// deleted after its window is the pool's Reaped.
	EventReleased EventReason = "Released"
	// EventReaped: the pool deleted a pod nobody uses: idle too long,
	// above target, template changed, owner replica gone, abandoned.
	EventReaped EventReason = "Reaped"
	// EventProfileDegraded (Warning): the pod cannot start (its image
	// cannot be pulled, its container crash-loops, it does not become
	// Ready, ...), so its profile is degraded; the pod is deleted.
	EventProfileDegraded EventReason = "ProfileDegraded"
	// EventClaimRecordFailed (Warning): a pod handed out from memory could
	// not be recorded as claimed (it was no longer this replica's), so the
	// session was ended and the pod deleted.
	EventClaimRecordFailed EventReason = "ClaimRecordFailed"
)

// Warning reports whether the reason is a failure an operator should look
// at (Event type Warning) rather than the normal course (Normal).
func (r EventReason) Warning() bool {
	return r == EventProfileDegraded || r == EventClaimRecordFailed
}

// PerLogin reports whether every login records the reason. Each Event is
// one API write, and a warm login's budget is two (claim record and
// refill), so these are recorded only when the operator asks for them
// (PODGATE_POD_EVENTS=all).
func (r EventReason) PerLogin() bool {
	switch r {
	case EventClaimed, EventParked, EventReconnected, EventReleased:
		return true
	}
	return false
}

// Action is the events.k8s.io action the reason reports: what podgate did,
// or failed to do, to the pod.
func (r EventReason) Action() string {
	switch r {
	case EventClaimed, EventReconnected, EventClaimRecordFailed:
		return "Claim"
	case EventParked:
		return "Park"
	case EventProfileDegraded:
		return "Start"
	default:
		return "Delete"
	}
}

// PodEvents records Events on guest pods. Implementations must return at
// once and make no API call on the caller's goroutine: events are written
// in the background, after the login they describe.
type PodEvents interface {
	PodEvent(pod PodRef, uid string, reason EventReason, note string)
}

// NoPodEvents records nothing; it stands in when no recorder is given.
type NoPodEvents struct{}

// PodEvent does nothing.
func (NoPodEvents) PodEvent(PodRef, string, EventReason, string) {}

// OrNoPodEvents is e, or NoPodEvents when e is nil.
func OrNoPodEvents(e PodEvents) PodEvents {
	if e == nil {
		return NoPodEvents{}
	}
	return e
}
