package scheduler

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Policy is everything the scheduler needs to know about one profile: how to
// map a Process to an argv, which limits apply and who may use it. Package
// pool/profile parses it from a PodTemplate's annotations (or from the
// operator's defaults) and serves it through Pools.
type Policy struct {
	// Name is the profile's name, as used in metric labels and logs.
	Name string
	Mode Mode
	// Shell is the argv of an interactive login, e.g. ["/bin/sh", "-l"].
	Shell []string
	// ExecWrapper is prepended to an exec request's command, which is
	// appended as one single argument, e.g. ["/bin/sh", "-c"].
	ExecWrapper []string
	// Subsystems maps an SSH subsystem name to its argv in the pod.
	Subsystems map[string][]string
	// EnvAllow lists variable names, beyond sshfront's base list, that may
	// be passed to the pod.
	EnvAllow []string
	// PortForwarding allows direct-tcpip channels (ssh -L, -D): to the
	// user's own pod, and to the destinations ForwardAllow lists.
	PortForwarding bool
	ForwardAllow   ForwardRules
	IdleTimeout    time.Duration
	MaxSession     time.Duration
	// MaxWait bounds how long a connection waits for a cold pod.
	MaxWait time.Duration
	// ReconnectWindow is how long a connection-mode pod is kept for the same
	// identity after the connection closes (at most the scheduler's
	// Options.MaxReconnectWindow); zero deletes it at once.
	ReconnectWindow time.Duration
	// MaxConnections bounds concurrent attachments of the profile on this
	// replica; MaxPerUser the pods one user holds or has parked in the
	// profile, counted over every replica (see admitPod for the bound on
	// the race between replicas); zero means no limit.
	MaxConnections int
	MaxPerUser     int
	// AllowedUsers lists who may use the profile; "*" (or an empty list on
	// the default profile) means anyone.
	AllowedUsers []string
	// UserSelectable says whether a login name "user+profile" may pick the
	// profile; otherwise only the auth source can assign it.
	UserSelectable bool
	// DisableCommand refuses shell and exec requests, so that only the
	// profile's subsystems (sftp, and scp over it) run: ContainerSSH's
	// disableCommand, for file drops.
	DisableCommand bool
	// MOTD is written to interactive terminal sessions after login, with
	// {user} and {profile} substituted; empty writes nothing.
	MOTD string
	// Record says what of each terminal session is recorded, and
	// RecordMaxBytes bounds one recording (zero: the server's limit).
	Record         RecordMode
	RecordMaxBytes int64
}

// RecordMode says what of a terminal session is recorded as an asciinema
// cast. The empty mode records nothing.
type RecordMode string

const (
	RecordOff RecordMode = "off"
	// RecordOutput records what the terminal showed.
	RecordOutput RecordMode = "output"
	// RecordInput records what the terminal showed and, as "i" events,
	// the keys typed (see sshfront/recording for what is left out).
	RecordInput RecordMode = "input"
)

// Enabled reports whether the mode records anything.
func (m RecordMode) Enabled() bool { return m == RecordOutput || m == RecordInput }

// Allows reports whether user may use the profile.
func (p Policy) Allows(user string) bool {
	return slices.Contains(p.AllowedUsers, "*") || slices.Contains(p.AllowedUsers, user)
}

// Pod is a pod claimed for one attachment or session, with an exec stream
// a replica prepared into it ahead of time, if any.
type Pod struct {
	Ref     PodRef
	UID     string
	Profile string
	// Warm is true when the pod came from the idle pool, false when it was
	// created on demand.
	Warm bool
	// Stream is a prepared exec stream (a terminal or a plain one, see
	// Prepared.TTY), owned by the claimer from now on: it must Run or
	// Close it. Nil when none was prepared.
	Stream Prepared
	// Record, when set, is the pod's claim record, still being written:
	// the pod was handed out from memory so that the user's command could
	// start at once. The holder runs sessions meanwhile, but must end
	// them, and release the pod, should the record fail. Nil means the
	// claim was recorded before the pod was returned.
	Record *ClaimRecord
}

// ClaimRecord is the outcome of a claim record written while the pod is
// already in use. Its methods are safe on a nil *ClaimRecord, which stands
// for a record already written.
type ClaimRecord struct {
	done chan struct{}
	err  error
}

// NewClaimRecord returns a record in flight and the function that settles
// it with the write's outcome; only the first call counts.
func NewClaimRecord() (*ClaimRecord, func(error)) {
	r := &ClaimRecord{done: make(chan struct{})}
	var once sync.Once
	return r, func(err error) {
		once.Do(func() {
			r.err = err
			close(r.done)
		})
	}
}

// closedDone is the Done channel of a nil record.
var closedDone = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// Done is closed once the record is written or has failed.
func (r *ClaimRecord) Done() <-chan struct{} {
	if r == nil {
		return closedDone
	}
	return r.done
}

// Err is the record's failure, nil while in flight or once written.
func (r *ClaimRecord) Err() error {
	if r == nil {
		return nil
	}
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}

// Wait waits for the record's outcome, or for ctx to end.
func (r *ClaimRecord) Wait(ctx context.Context) error {
	select {
	case <-r.Done():
		return r.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Claim describes who a pod is claimed for; pool writes it to the pod's
// labels and annotations so that operators and the reaper can see it.
type Claim struct {
	Identity Identity
	// UserKey is UserKey(Identity.User, the resolved profile): pool puts it
	// on the pod (a label) so that every replica counts the user's pods and
	// finds their parked one.
	UserKey string
	// Session names the claim in the podgate.io/session label: the
	// connection id, plus a channel number in session mode.
	Session string
}

// WaitState is what a caller waiting for a cold pod is told each time the
// pod's state changes, for progress messages.
type WaitState struct {
	// Phase is a short, safe description such as "scheduling" or
	// "pulling image".
	Phase string
	// Position is the caller's 1-based place in line for a pod of the
	// profile, among the logins waiting on this replica, served in
	// arrival order; 0 when the pool does not say.
	Position int
	// Wait estimates how long until a pod is the caller's: its position
	// over the rate at which the cluster turns pods Ready; 0 when that
	// rate is not known.
	Wait time.Duration
}

// ErrNoIdlePod is returned by Pools.Claim when the profile has no warm pod
// to hand out; the caller then waits for one with Pools.AwaitPod.
var ErrNoIdlePod = errors.New("no idle pod")

// Pools is the pod supply the scheduler consumes. Package pool implements it
// with informers, pods reserved per replica, optimistic-concurrency claims
// and a leader-elected replenisher.
type Pools interface {
	// Policy returns the profile's policy; "" names the default profile.
	// It fails with ErrUnknownProfile, or with a Refusal wrapping
	// ErrProfileDegraded when the profile's template is invalid.
	Policy(profile string) (Policy, error)
	// Claim hands out a warm pod, or fails with ErrNoIdlePod. A pod
	// reserved for this replica comes from memory with no API call, its
	// claim record in flight (Pod.Record); an unreserved one costs one
	// conditional write before it is returned.
	Claim(ctx context.Context, profile string, c Claim) (*Pod, error)
	// AwaitPod waits for a pod when Claim found none: one created claimed
	// for the caller, or whichever pod of the profile is ready for it
	// first. It fails fast with a Refusal wrapping ErrProfileDegraded
	// when pods cannot start, and returns ctx's error when ctx ends first
	// (a pod created for it is then deleted).
	AwaitPod(ctx context.Context, profile string, c Claim, progress func(WaitState)) (*Pod, error)
	// Release deletes a claimed pod (UID precondition), marking it released
	// for the reaper when the delete fails. It closes an unused stream.
	Release(ctx context.Context, pod *Pod) error
	// Alive reports whether the pod still exists and is Ready.
	Alive(pod *Pod) bool
}
