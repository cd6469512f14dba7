package sshfront

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/podgate/podgate/internal/testenv/hosttools"
	"github.com/podgate/podgate/scheduler"
)

// fakeBackend hands out fakeAttachments. Tests set its fields before the
// server starts; what it records is read under mu.
type fakeBackend struct {
	settings scheduler.Settings
	// attachErr, if set, is returned by Attach.
	attachErr error
	// gate, if set, makes Attach report progress and wait for it to close.
	gate chan struct{}
	// run, if set, replaces running commands with os/exec.
	run func(ctx context.Context, p scheduler.Process) (scheduler.ExitStatus, error)
	// dial, if set, serves Dial.
	dial func(ctx context.Context, host string, port uint16) (net.Conn, error)

	mu         sync.Mutex // guards the fields below
	identities []scheduler.Identity
	closed     int
	// missingTools are the host tools Run could not find, which the
	// harness reports when the test ends.
	missingTools []error
}

var _ Backend = (*fakeBackend)(nil)

func (b *fakeBackend) Attach(ctx context.Context, id scheduler.Identity, progress scheduler.Progress) (scheduler.Attachment, error) {
	b.mu.Lock()
	b.identities = append(b.identities, id)
	b.mu.Unlock()
	if b.gate != nil {
		progress("podgate: waiting for a pod (position 1)")
		select {
		case <-b.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if b.attachErr != nil {
		return nil, b.attachErr
	}
	return &fakeAttachment{b: b}, nil
}

func (b *fakeBackend) attached() []scheduler.Identity {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]scheduler.Identity(nil), b.identities...)
}

// hostTool returns the path of a host tool on the host-tool list, and
// records a missing one so that the harness fails the test naming its
// Debian package rather than only with the client's "internal error".
func (b *fakeBackend) hostTool(name string) (string, error) {
	path, err := hosttools.Path(name)
	if err != nil {
		b.mu.Lock()
		b.missingTools = append(b.missingTools, err)
		b.mu.Unlock()
	}
	return path, err
}

func (b *fakeBackend) missingToolErrors() []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]error(nil), b.missingTools...)
}

func (b *fakeBackend) closedCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// fakeAttachment runs commands on the local machine, so real OpenSSH
// clients can be driven against the server. There is no real pty: with a
// Pty the command runs without one and sees TERM and the size in its env.
type fakeAttachment struct {
	b *fakeBackend
}

var (
	_ scheduler.Attachment = (*fakeAttachment)(nil)
	_ podNamer             = (*fakeAttachment)(nil)
)

func (a *fakeAttachment) Settings() scheduler.Settings { return a.b.settings }
func (a *fakeAttachment) PodName() string              { return "pod-1" }

func (a *fakeAttachment) Close() error {
	a.b.mu.Lock()
	defer a.b.mu.Unlock()
	a.b.closed++
	return nil
}

func (a *fakeAttachment) Dial(ctx context.Context, host string, port uint16) (net.Conn, error) {
	if a.b.dial == nil {
		return nil, errors.New("no dialer")
	}
	return a.b.dial(ctx, host, port)
}

func (a *fakeAttachment) Run(ctx context.Context, p scheduler.Process) (scheduler.ExitStatus, error) {
	if a.b.run != nil {
		return a.b.run(ctx, p)
	}
	tool, args := "sh", []string(nil)
	switch p.Kind {
	case scheduler.KindExec:
		args = []string{"-c", p.Command}
	case scheduler.KindSubsystem:
		if p.Subsystem != "sftp" {
			return scheduler.ExitStatus{}, fmt.Errorf("subsystem %q: %w", p.Subsystem, scheduler.ErrUnknownSubsystem)
		}
		tool = "sftp-server"
	}
	path, err := a.b.hostTool(tool)
	if err != nil {
		return scheduler.ExitStatus{}, err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	for k, v := range p.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout = p.Stdout
	cmd.Stderr = p.Stderr
	if p.Pty != nil {
		cmd.Env = append(cmd.Env, "TERM="+p.Pty.Term, fmt.Sprintf("COLUMNS=%d", p.Pty.Size.Cols), fmt.Sprintf("LINES=%d", p.Pty.Size.Rows))
		cmd.Stderr = p.Stdout
	}
	// Stdin is copied by hand rather than through cmd.Stdin: exec.Cmd.Wait
	// would wait for the copy, and a command that never reads stdin would
	// then hang until the client sent EOF.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return scheduler.ExitStatus{}, err
	}
	if err := cmd.Start(); err != nil {
		return scheduler.ExitStatus{}, err
	}
	go func() {
		_, _ = io.Copy(stdin, p.Stdin)
		stdin.Close()
	}()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case sig := <-p.Signals:
				if s, ok := signalNumbers[sig]; ok {
					_ = cmd.Process.Signal(s)
				}
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			for name, s := range signalNumbers {
				if s == ws.Signal() {
					return scheduler.ExitStatus{Code: 128 + int(s), Signal: name}, nil
				}
			}
		}
		return scheduler.ExitStatus{Code: ee.ExitCode()}, nil
	}
	if err != nil {
		return scheduler.ExitStatus{}, err
	}
	return scheduler.ExitStatus{}, nil
}

var signalNumbers = map[string]syscall.Signal{
	"INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "HUP": syscall.SIGHUP,
	"KILL": syscall.SIGKILL, "USR1": syscall.SIGUSR1, "QUIT": syscall.SIGQUIT,
}

// syncBuffer is a goroutine-safe buffer for captured logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newLogger(w io.Writer) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// pipeListener is an in-memory listener over memPipe, so tests can run the
// server inside a testing/synctest bubble.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22} }

func (l *pipeListener) Dial() (net.Conn, error) {
	server, client := memPipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// deadline gives a test-wide bound for blocking reads in loopback tests; it
// is a safety net against hangs, not a timing assertion.
const deadline = 30 * time.Second
