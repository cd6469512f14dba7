package scheduler

import (
	"context"
	"io"
	"net"
	"net/netip"
)

// PodRef names the container a command runs in.
type PodRef struct {
	Namespace string
	Name      string
	Container string
}

// Command is a process to start in a pod: an argv already mapped from a
// Process through the profile, plus the session's streams. The Execer
// gives it the login environment sshd would: USER and LOGNAME name the
// pod's account when it has a name (replacing Env's values), and a
// terminal command gets SSH_TTY naming its terminal in the pod.
type Command struct {
	Argv []string
	Env  map[string]string
	Pty  *Pty

	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Resize  <-chan WindowSize
	Signals <-chan string
}

// Execer runs commands in pods. Package kube implements it over the API
// server's pods/exec (WebSocket, falling back to SPDY) and pods/portforward.
type Execer interface {
	// Prepare opens an exec stream into the pod before any user needs it.
	// The pod-side wrapper waits for its command, so a later Run costs no
	// API round trip. tty selects a terminal stream or a plain one.
	Prepare(ctx context.Context, pod PodRef, tty bool) (Prepared, error)
	// Exec runs cmd over a fresh exec stream.
	Exec(ctx context.Context, pod PodRef, cmd Command) (ExitStatus, error)
	// DialTCP opens a stream to a port inside the pod.
	DialTCP(ctx context.Context, pod PodRef, port uint16) (net.Conn, error)
	// Relay opens a TCP connection to host:port from inside the pod, so
	// that the pod's network identity and NetworkPolicy apply to it. When
	// host is a name the pod resolves it, and pick chooses the address to
	// connect to among the ones it got (or refuses, and nothing is
	// connected): the address connected to is always one pick allowed. A
	// literal address is passed to pick alone. ctx bounds the setup only.
	Relay(ctx context.Context, pod PodRef, host string, port uint16, pick func([]netip.Addr) (netip.Addr, error)) (net.Conn, error)
}

// Prepared is an exec stream opened ahead of time, whose wrapper is waiting
// for a command. It runs at most one command.
type Prepared interface {
	// TTY reports whether the stream was opened with a terminal.
	TTY() bool
	// Run hands cmd to the waiting wrapper and streams until it exits.
	// cmd.Pty must be set exactly when TTY() is true.
	Run(ctx context.Context, cmd Command) (ExitStatus, error)
	// Close abandons a stream that was not used; the wrapper exits.
	Close() error
}
