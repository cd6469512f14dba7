// Package scheduler decides what each SSH connection or session gets: a warm
// pod claimed from a profile's pool, a cold pod created on demand, a place in
// a queue, or a plain refusal. It is domain logic: it talks to Kubernetes only
// through the small interfaces it declares, which package kube implements.
package scheduler

import (
	"context"
	"errors"
	"io"
	"net"
	"time"
)

// Identity is who an SSH connection authenticated as. The reconnect window and
// every per-user limit are keyed by UserKey(User, resolved profile), never by
// the raw login name, so a username trick cannot land one user in another's
// pod.
type Identity struct {
	// User is the authenticated user name, canonical (the auth source's
	// answer, without any "+profile" suffix).
	User string
	// Profile is the profile the auth source or the login name asked for;
	// empty means the default profile.
	Profile string
	// ProfileFromLogin is true when Profile came from a "user+profile"
	// login name rather than from the auth source; such a choice is
	// honoured only by a profile that allows user selection.
	ProfileFromLogin bool
	// RemoteAddr is the client's address, for logs and audit.
	RemoteAddr string
	// ConnID identifies the SSH connection in logs, labels and audit lines.
	ConnID string
	// KeyFingerprint is the SHA256 fingerprint of the public key used, if any.
	KeyFingerprint string
	// AcceptedAt is when the TCP connection was accepted; attach latency is
	// measured from it.
	AcceptedAt time.Time
}

// Mode says whether a pod serves a whole connection or one session channel.
type Mode string

const (
	// ModeConnection gives each SSH connection one pod; every session
	// channel of the connection runs in it.
	ModeConnection Mode = "connection"
	// ModeSession gives each session channel a short-lived pod of its own.
	ModeSession Mode = "session"
)

// Kind is what a session channel asked to run.
type Kind int

const (
	// KindShell is an SSH "shell" request: the profile's shell command.
	KindShell Kind = iota
	// KindExec is an SSH "exec" request: Command through the exec wrapper.
	KindExec
	// KindSubsystem is an SSH "subsystem" request, such as sftp.
	KindSubsystem
)

// WindowSize is a terminal size in character cells.
type WindowSize struct {
	Cols, Rows uint16
}

// Pty is what an SSH pty-req asked for, already validated and clamped.
type Pty struct {
	Term string
	Size WindowSize
	// Modes are the RFC 4254 encoded terminal modes (opcode → value).
	Modes map[uint8]uint32
}

// Process is one session channel's request, with its streams. sshfront fills
// it; the scheduler maps Kind to an argv through the profile and runs it.
type Process struct {
	Kind Kind
	// Command is the user's command for KindExec, passed to the profile's
	// exec wrapper as a single argument and never interpreted by podgate.
	Command string
	// Subsystem is the requested name for KindSubsystem.
	Subsystem string
	// Env holds the variables that passed the allowlist and those sshfront
	// sets itself (USER, SSH_CONNECTION, PODGATE_USER, ...).
	Env map[string]string
	// Pty is nil for a session without a terminal.
	Pty *Pty

	Stdin  io.Reader // EOF on Stdin is delivered to the process as stdin EOF.
	Stdout io.Writer
	Stderr io.Writer // ignored when Pty is set: a terminal merges the streams.
	// Resize carries window-change requests; it may be nil.
	Resize <-chan WindowSize
	// Signals carries SSH signal names without the "SIG" prefix ("INT",
	// "TERM", ...); it may be nil.
	Signals <-chan string
}

// ExitStatus is how a process ended. Signal is set (without "SIG") when the
// process was killed by a signal and the platform told us which.
type ExitStatus struct {
	Code   int
	Signal string
}

// Settings are the per-profile knobs sshfront needs before and during a
// session. Durations of zero mean "no limit".
type Settings struct {
	Profile string
	Mode    Mode
	// AllowEnv reports whether a variable name may be passed to the pod.
	AllowEnv func(name string) bool
	// PortForwarding is whether direct-tcpip (ssh -L, -D) is allowed.
	PortForwarding bool
	IdleTimeout    time.Duration
	MaxSession     time.Duration
	// DisableCommand, MOTD, Record and RecordMaxBytes are the policy's
	// (see Policy).
	DisableCommand bool
	MOTD           string
	Record         RecordMode
	RecordMaxBytes int64
}

// Progress receives human-readable progress while a pod is being made, e.g.
// "waiting for a pod (position 3, 2s)". Implementations must be safe for
// concurrent use and must not block.
type Progress func(msg string)

// Attachment is what one authenticated SSH connection holds: in connection
// mode, a claimed pod; in session mode, the right to claim one per session.
type Attachment interface {
	Settings() Settings
	// Run runs one session channel's process to completion.
	Run(ctx context.Context, p Process) (ExitStatus, error)
	// Dial opens a connection for a direct-tcpip channel (ssh -L, -D) to
	// host:port: a port of the connection's own pod when host is
	// localhost or the pod's name, else a destination the profile's
	// ForwardAllow rules allow, reached from inside the pod.
	Dial(ctx context.Context, host string, port uint16) (net.Conn, error)
	// Close releases the attachment; in connection mode the pod is kept for
	// the reconnect window when one is configured, else deleted.
	Close() error
}

// Sentinel errors. sshfront maps each to a fixed, safe message for the user
// with UserMessage; operator detail stays in the wrapped error and the log.
var (
	ErrAtCapacity        = errors.New("at capacity")
	ErrWaitTimeout       = errors.New("timed out waiting for a pod")
	ErrProfileDegraded   = errors.New("profile cannot start pods")
	ErrUnknownProfile    = errors.New("unknown profile")
	ErrProfileNotAllowed = errors.New("profile not allowed for this user")
	ErrUnknownSubsystem  = errors.New("unknown subsystem")
	// ErrCommandDisabled refuses a shell or exec request in a profile
	// that allows subsystems only (Policy.DisableCommand).
	ErrCommandDisabled    = errors.New("shell and exec disabled in profile")
	ErrForwardingDisabled = errors.New("port forwarding disabled")
	// ErrForwardDenied is a forwarding destination the profile's rules
	// do not allow.
	ErrForwardDenied = errors.New("forwarding destination not allowed")
	// ErrHostNotFound is a forwarding destination whose name the pod
	// could not resolve.
	ErrHostNotFound = errors.New("host name not found")
	// ErrRelayUnavailable is a pod whose image lacks what the relay
	// needs: bash, and getent for host names.
	ErrRelayUnavailable = errors.New("image cannot relay connections")
	// ErrConnectFailed is a relay whose connection to an allowed
	// destination failed (refused, unreachable, timed out).
	ErrConnectFailed      = errors.New("connection to the destination failed")
	ErrClusterUnavailable = errors.New("cluster unavailable")
	// ErrBusy is podgate's own client-side throttling: the API server is
	// fine, but podgate's request budget (PODGATE_KUBE_QPS and
	// PODGATE_KUBE_BURST) ran out before the request could be sent.
	ErrBusy         = errors.New("api request budget exhausted")
	ErrPodGone      = errors.New("pod gone")
	ErrShuttingDown = errors.New("server shutting down")
)
