package scheduler

import (
	"context"
	"errors"
	"slices"
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
	// identity after the connection closes; zero deletes it at once.
	ReconnectWindow time.Duration
	// MaxConnections and MaxPerUser bound concurrent attachments of the
	// profile on this replica; zero means no limit.
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

// Pod is a pod claimed for one attachment or session, with the exec streams
// a replica prepared for it ahead of time (either may be nil).
type Pod struct {
	Ref     PodRef
	UID     string
	Profile string
	// Warm is true when the pod came from the idle pool, false when it was
	// created on demand.
	Warm bool
	// TTY and Plain are prepared exec streams, owned by the claimer from
	// now on: it must Run or Close each one.
	TTY   Prepared
	Plain Prepared
}

// Claim describes who a pod is claimed for; pool writes it to the pod's
// labels and annotations so that operators and the reaper can see it.
type Claim struct {
	Identity Identity
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
}

// ErrNoIdlePod is returned by Pools.Claim when the profile has no idle, Ready
// pod to hand out; the caller then creates one with Pools.Create.
var ErrNoIdlePod = errors.New("no idle pod")

// Pools is the pod supply the scheduler consumes. Package pool implements it
// with informers, optimistic-concurrency claims and a leader-elected
// replenisher.
type Pools interface {
	// Policy returns the profile's policy; "" names the default profile.
	// It fails with ErrUnknownProfile, or with a Refusal wrapping
	// ErrProfileDegraded when the profile's template is invalid.
	Policy(profile string) (Policy, error)
	// Claim hands out an idle Ready pod with exactly one API write, or
	// fails with ErrNoIdlePod.
	Claim(ctx context.Context, profile string, c Claim) (*Pod, error)
	// Create makes a pod claimed from birth and waits, through the
	// informer, until it is Ready. It fails fast with a Refusal wrapping
	// ErrProfileDegraded when the pod cannot start, and returns ctx's error
	// when ctx ends first (the pod is then deleted).
	Create(ctx context.Context, profile string, c Claim, progress func(WaitState)) (*Pod, error)
	// Release deletes a claimed pod (UID precondition), marking it released
	// for the reaper when the delete fails. It closes unused streams.
	Release(ctx context.Context, pod *Pod) error
	// Alive reports whether the pod still exists and is Ready.
	Alive(pod *Pod) bool
}
