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

// WaitMessage is the progress line a user waiting for a cold pod is shown
// every few seconds: their place in line, an estimate of the wait when the
// pool knows how fast pods start (wait 0: unknown), what their pod is doing
// and how long they have waited. It starts with "waiting for a pod", which
// clients (the bench among them) take as the sign of a cold login.
func WaitMessage(position int, wait time.Duration, phase string, waited time.Duration) string {
	where := fmt.Sprintf("you are %s in line", ordinal(position))
	if wait > 0 {
		where += ", about " + roughly(wait)
	}
	return fmt.Sprintf("waiting for a pod: %s (%s, %d s so far)", where, phase, int(waited.Seconds()))
}

// roughly says a wait plainly: to the 5 s below a minute (at least 5 s),
// to the minute above.
func roughly(d time.Duration) string {
	if d < time.Minute-2500*time.Millisecond {
		return fmt.Sprintf("%d s", max(5, int(d.Round(5*time.Second).Seconds())))
	}
	return fmt.Sprintf("%d min", int(d.Round(time.Minute).Minutes()))
}

// ordinal is 1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, ...
func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", n, suffix)
}
