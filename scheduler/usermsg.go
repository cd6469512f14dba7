package scheduler

import (
	"errors"
	"fmt"
	"time"
)

// Refusal is an error that carries a plain explanation fit for the SSH user,
// such as "the image for profile \"gpu\" cannot be pulled". The scheduler
// returns it when it can say more than a sentinel does; Err keeps the
// sentinel (or the operator detail) reachable through errors.Is and errors.As.
type Refusal struct {
	// Err is the underlying error, usually wrapping one of the sentinels.
	Err error
	// Reason is a short, safe sentence shown to the user as is. It must not
	// contain operator detail such as node names, API errors or secrets.
	Reason string
}

// Error returns the reason together with the wrapped error, for logs.
func (r *Refusal) Error() string {
	if r.Err == nil {
		return r.Reason
	}
	return r.Reason + ": " + r.Err.Error()
}

// Unwrap returns the wrapped error so errors.Is finds the sentinel.
func (r *Refusal) Unwrap() error { return r.Err }

// sentinelMessage maps each sentinel to the sentence an SSH user sees. The
// text is fixed so that nothing from a wrapped error (API server messages,
// pod names, internal addresses) ever reaches an untrusted client.
func sentinelMessage(err error) string {
	switch {
	case errors.Is(err, ErrAtCapacity):
		return "podgate: all pods are busy, please try again in a minute"
	case errors.Is(err, ErrWaitTimeout):
		return "podgate: no pod became free in time, please try again in a minute"
	case errors.Is(err, ErrProfileDegraded):
		return "podgate: this environment cannot start right now, please try again later"
	case errors.Is(err, ErrUnknownProfile):
		return "podgate: unknown profile"
	case errors.Is(err, ErrProfileNotAllowed):
		return "podgate: you are not allowed to use this profile"
	case errors.Is(err, ErrUnknownSubsystem):
		return "podgate: unknown subsystem"
	case errors.Is(err, ErrCommandDisabled):
		// Legacy "scp -O" is an exec request, so it lands here too.
		return "podgate: this account is for file transfer only: use sftp, or scp without -O; shells and commands are disabled"
	case errors.Is(err, ErrForwardingDisabled):
		return "podgate: port forwarding is disabled"
	case errors.Is(err, ErrForwardDenied):
		return "podgate: forwarding to this destination is not allowed"
	case errors.Is(err, ErrHostNotFound):
		return "podgate: host name not found"
	case errors.Is(err, ErrRelayUnavailable):
		return "podgate: this environment's image cannot relay connections (it needs bash, and getent for host names)"
	case errors.Is(err, ErrConnectFailed):
		return "podgate: connect failed"
	case errors.Is(err, ErrBusy):
		return "podgate: the server is busy, please try again in a moment"
	case errors.Is(err, ErrClusterUnavailable):
		return "podgate: the cluster is unavailable, please try again later"
	case errors.Is(err, ErrPodGone):
		return "podgate: your pod went away, please reconnect"
	case errors.Is(err, ErrShuttingDown):
		return "podgate: the server is shutting down, please reconnect in a minute"
	}
	return "podgate: internal error, please try again"
}

// UserMessage returns the fixed, plain sentence an SSH user is shown for err.
// A Refusal's Reason wins (prefixed with "podgate: "); otherwise the first
// sentinel that err wraps decides; anything else is an internal error whose
// detail belongs in the operator log only.
func UserMessage(err error) string {
	if err == nil {
		return ""
	}
	var r *Refusal
	if errors.As(err, &r) && r.Reason != "" {
		return "podgate: " + r.Reason
	}
	return sentinelMessage(err)
}

// ReconnectMessage is the line a user of a profile with a reconnect window
// is shown on login (on stderr, as progress is): whether they are back in
// the pod they left or in a new one, and why when their old one is gone.
// window is how long the pod is kept after they disconnect.
func ReconnectMessage(res ReconnectResult, window time.Duration) string {
	keep := fmt.Sprintf("it is kept for %s after you disconnect", window)
	switch res {
	case ReconnectSamePod:
		return "podgate: you are back in the pod you left, with your files; " + keep
	case ReconnectExpired:
		return "podgate: you are in a new pod: your earlier pod was not kept, its time ran out; " + keep
	case ReconnectDeleted:
		return "podgate: you are in a new pod: your earlier pod was stopped; " + keep
	}
	return "podgate: you are in a new pod; " + keep
}
