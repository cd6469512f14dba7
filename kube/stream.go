package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	utilexec "k8s.io/client-go/util/exec"

	"github.com/podgate/podgate/scheduler"
)

// errStreamEnded is what writes to a finished stream's stdin fail with.
var errStreamEnded = errors.New("exec stream ended")

// streamState is where an execStream is in its life.
type streamState int

const (
	streamIdle    streamState = iota // waiting for Run or Close
	streamRunning                    // taken by Run (or by Exec)
	streamClosed                     // taken by Close
)

// execStream is one exec of the wrapper: a prepared stream waiting for its
// command, or the stream behind a fresh Exec. It implements
// scheduler.Prepared.
//
// Goroutines: one serves the connection (execConn) for the stream's whole
// life and closes done when it ends; that is all an idle prepared stream
// holds. The hello and the spec are written directly. Run adds a copier of
// the user's stdin, which ends with the stream or, once copying, when that
// stdin ends (a Read cannot be interrupted, so Run does not wait for it),
// and resize and signal forwarders, which end with the stream and which Run
// waits for.
//
// Stdin EOF: on a plain stream the user's EOF is passed on (WebSocket v5 and
// SPDY both carry the half-close). On a terminal it is not: containerd
// closes the pty when an exec's stdin closes, losing the command's output,
// and sshd likewise ignores EOF on a pty session.
type execStream struct {
	e   *Executor
	pod scheduler.PodRef
	tty bool
	log *slog.Logger

	conn   execConn
	done   chan struct{} // closed when serve has returned
	result error         // the stream's outcome; written before done is closed
	stdout *markerWriter
	stderr *gate // nil for a terminal, whose streams are merged

	mu    sync.Mutex // mu protects state
	state streamState
}

// execConn is one exec connection: podgate's own WebSocket client
// (wsconn.go), its own SPDY client (spdyexec.go), or client-go's SPDY
// executor (spdyconn.go, the terminal fallback); which one a stream takes
// is Executor.openExec's choice.
type execConn interface {
	// serve runs until the exec ends, passing the command's output to
	// stdout and stderr (nil for a terminal), and returns its outcome:
	// nil, a utilexec.ExitError, or why the stream failed.
	serve(stdout, stderr io.Writer) error
	// writeStdin sends bytes to the command's stdin, in order.
	writeStdin(p []byte) error
	// closeStdin half-closes the command's stdin.
	closeStdin() error
	// resize sets the terminal's size.
	resize(size scheduler.WindowSize) error
	// abort tears the connection down; serve then returns.
	abort()
}

// start opens an exec stream running the wrapper and writes its hello.
// With waitReady it returns only after the wrapper's ready line has
// arrived, so the stream is proven open and, for a terminal, in raw mode.
func (e *Executor) start(ctx context.Context, pod scheduler.PodRef, tty, waitReady bool) (*execStream, error) {
	pod, err := e.resolveContainer(ctx, pod)
	if err != nil {
		return nil, err
	}
	// The stream outlives ctx (a prepared stream waits in a pool); ctx
	// bounds only its opening and the wait below.
	conn, err := e.openExec(ctx, pod, wrapperArgv(tty), tty)
	if err != nil {
		return nil, e.streamError(pod, "opening exec stream", false, err)
	}
	s := &execStream{
		e:      e,
		pod:    pod,
		tty:    tty,
		log:    e.log.With("pod", pod.Namespace+"/"+pod.Name, "container", pod.Container),
		conn:   conn,
		done:   make(chan struct{}),
		stdout: &markerWriter{out: &gate{}, ready: make(chan struct{})},
	}
	if tty {
		s.stdout.started = make(chan struct{})
	} else {
		s.stderr = &gate{}
	}
	go s.stream()
	if err := conn.writeStdin([]byte(helloLine)); err != nil {
		<-s.done
		return nil, e.streamError(pod, "starting exec wrapper", false, s.startFailure())
	}
	if !waitReady {
		return s, nil
	}
	select {
	case <-s.stdout.ready:
		return s, nil
	case <-s.done:
		return nil, e.streamError(pod, "starting exec wrapper", false, s.startFailure())
	case <-ctx.Done():
		// The caller has gone. The wrapper is told to exit, and the stream
		// is torn down in the background only after that (see teardown).
		s.mu.Lock()
		s.state = streamClosed
		s.mu.Unlock()
		go s.shutdown()
		return nil, fmt.Errorf("starting exec wrapper in pod %s/%s: %w", pod.Namespace, pod.Name, ctx.Err())
	}
}

// teardown cancels the stream once that is safe, and waits for its end.
//
// client-go's executors, which serve the SPDY fallback (spdyConn), dial
// inside their stream call, and client-go's WebSocket executor was seen to
// leak its goroutines when cancelled in the instant between the upgrade and
// the start of its read loop, because the upgrade does not abort on a
// cancel. podgate's own WebSocket client dials before its read loop starts,
// but the rule is kept for every connection: a stream is cancelled only
// once its ready line has arrived, which proves the read loop runs, or once
// it has ended by itself; one that shows neither within closeTimeout is
// cancelled regardless, its upgrade being long over or hung by then. A
// command that started meanwhile gets SIGHUP first, as a closing terminal
// would send. shutdown, for a stream whose spec has not been sent, follows
// the same rule by waiting closeTimeout before it cancels.
func (s *execStream) teardown() {
	timer := time.NewTimer(closeTimeout)
	defer timer.Stop()
	select {
	case <-s.stdout.ready:
		s.hangup()
	case <-s.done:
	case <-timer.C:
	}
	s.conn.abort()
	<-s.done
}

// stream serves the connection to its end.
func (s *execStream) stream() {
	var stderr io.Writer
	if s.stderr != nil {
		stderr = s.stderr
	}
	s.result = s.conn.serve(s.stdout, stderr)
	close(s.done)
}

// startFailure explains why the wrapper ended before its ready line. Only
// valid after done is closed.
func (s *execStream) startFailure() error {
	output := s.stdout.noiseString()
	if s.stderr != nil {
		output += s.stderr.earlyString()
	}
	var exitErr utilexec.ExitError
	switch {
	case s.result == nil:
		return fmt.Errorf("wrapper exited before it was ready; output %q", output)
	case errors.As(s.result, &exitErr):
		return fmt.Errorf("wrapper exited before it was ready: %w; output %q", s.result, output)
	default:
		return fmt.Errorf("%w; output %q", s.result, output)
	}
}

// TTY reports whether the stream has a terminal.
func (s *execStream) TTY() bool { return s.tty }

// claim moves an idle stream to running; it reports false when the stream
// was already run or closed.
func (s *execStream) claim() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != streamIdle {
		return false
	}
	s.state = streamRunning
	return true
}

// Run hands cmd to the waiting wrapper and streams until the command exits.
// If the stream died while it waited (an idle timeout, a restarted
// kubelet), the command has not started, and Run transparently uses a fresh
// exec instead.
func (s *execStream) Run(ctx context.Context, cmd scheduler.Command) (scheduler.ExitStatus, error) {
	if (cmd.Pty != nil) != s.tty {
		return scheduler.ExitStatus{}, fmt.Errorf("running in prepared stream: %w: terminal requested %t, stream has %t",
			ErrInvalidCommand, cmd.Pty != nil, s.tty)
	}
	if !s.claim() {
		return scheduler.ExitStatus{}, errors.New("running in prepared stream: stream already used or closed")
	}
	spec, err := encodeSpec(cmd.Argv, cmd.Env, cmd.Pty, s.stdout.readyTerm())
	if err != nil {
		s.shutdown()
		return scheduler.ExitStatus{}, fmt.Errorf("running in pod %s/%s: %w", s.pod.Namespace, s.pod.Name, err)
	}
	select {
	case <-s.done:
		s.log.Info("prepared exec stream ended while idle; using a fresh one", "err", s.result)
		return s.e.Exec(ctx, s.pod, cmd)
	default:
	}
	return s.run(ctx, cmd, spec)
}

// run sends spec, splices the command's streams and waits for its exit.
func (s *execStream) run(ctx context.Context, cmd scheduler.Command, spec []byte) (scheduler.ExitStatus, error) {
	defer s.conn.abort()
	// Attach the outputs before the spec leaves: the command may write as
	// soon as the wrapper has read it.
	s.stdout.out.attach(cmd.Stdout)
	if s.stderr != nil {
		s.stderr.attach(cmd.Stderr)
	}
	if s.tty {
		// The runtime sets the terminal's size: no stty in the pod.
		if err := s.conn.resize(cmd.Pty.Size); err != nil {
			s.log.Debug("sizing the terminal", "err", err)
		}
	}
	if err := s.conn.writeStdin(spec); err == nil {
		go s.copyStdin(cmd.Stdin)
	}

	// sent records the signal numbers podgate delivered; only the signal
	// forwarder writes it, and it is read after wg.Wait.
	sent := make(map[int]bool)
	fwdCtx, stopForwarding := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if s.tty && cmd.Resize != nil {
		wg.Go(func() { s.forwardResizes(fwdCtx, cmd.Resize) })
	}
	if cmd.Signals != nil {
		wg.Go(func() { s.forwardSignals(fwdCtx, cmd.Signals, sent) })
	}

	var ctxErr error
	select {
	case <-s.done:
	case <-ctx.Done():
		ctxErr = ctx.Err()
		s.teardown()
	}
	stopForwarding()
	wg.Wait()
	// A copy still in flight after a cancellation must not reach the
	// user's writers once Run has returned.
	s.stdout.out.detach()
	if s.stderr != nil {
		s.stderr.detach()
	}
	if ctxErr != nil {
		return scheduler.ExitStatus{}, fmt.Errorf("running command in pod %s/%s: %w", s.pod.Namespace, s.pod.Name, ctxErr)
	}
	return s.e.exitStatus(s.pod, s.result, sent)
}

// copyStdin copies the user's stdin to the command until either ends. On a
// terminal it starts once the wrapper has read its spec (the go line), so
// that nothing the user types meets the line discipline before the command
// runs, and it leaves stdin open at the end (see execStream); on a plain
// stream it starts at once and then closes stdin so the command sees EOF.
func (s *execStream) copyStdin(stdin io.Reader) {
	if s.tty {
		select {
		case <-s.stdout.started:
		case <-s.done:
			return
		}
	}
	if stdin != nil {
		if _, err := io.Copy(stdinWriter{s.conn}, stdin); err != nil && !errors.Is(err, errStreamEnded) {
			s.log.Debug("copying stdin to pod", "err", err)
		}
	}
	if !s.tty {
		_ = s.conn.closeStdin()
	}
}

// stdinWriter writes to a connection's stdin.
type stdinWriter struct{ c execConn }

func (w stdinWriter) Write(p []byte) (int, error) {
	if err := w.c.writeStdin(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// forwardResizes passes window changes to the terminal until the stream or
// ctx ends.
func (s *execStream) forwardResizes(ctx context.Context, resize <-chan scheduler.WindowSize) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case size, ok := <-resize:
			if !ok {
				return
			}
			if err := s.conn.resize(size); err != nil {
				return
			}
		}
	}
}

// forwardSignals delivers signals to the command until the stream or ctx
// ends. Names outside the fixed list are logged and dropped.
func (s *execStream) forwardSignals(ctx context.Context, signals <-chan string, sent map[int]bool) {
	for {
		var name string
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case n, ok := <-signals:
			if !ok {
				return
			}
			name = n
		}
		num := signalNumber(name)
		if num == 0 {
			s.log.Info("dropping unsupported signal", "signal", name)
			continue
		}
		pid, ok := s.waitPID(ctx)
		if !ok {
			return
		}
		sent[num] = true
		err := s.e.signal(ctx, s.pod, name, pid)
		select {
		case <-s.done:
			// The command ended, typically from this very signal, and
			// ctx was cancelled under the delivery exec: nothing to report.
		default:
			if err != nil {
				s.log.Warn("delivering signal", "signal", name, "err", err)
			}
		}
	}
}

// waitPID returns the command's PID once the wrapper has announced it.
func (s *execStream) waitPID(ctx context.Context) (int, bool) {
	select {
	case <-s.stdout.ready:
		pid := s.stdout.readyPID()
		return pid, pid > 0
	case <-s.done:
		return 0, false
	case <-ctx.Done():
		return 0, false
	}
}

// hangup sends SIGHUP to the command, as a closing terminal would: tearing
// the exec connection down does not reliably end a process the container
// runtime started.
func (s *execStream) hangup() {
	select {
	case <-s.stdout.ready:
	default:
		return
	}
	pid := s.stdout.readyPID()
	if pid <= 0 {
		return
	}
	if err := s.e.signal(context.Background(), s.pod, "HUP", pid); err != nil {
		s.log.Warn("hanging up cancelled command", "err", err)
	}
}

// Close abandons an unused stream: it tells the wrapper to exit and waits,
// bounded, for the stream to end, so no process is left in the pod. It is a
// no-op on a stream that was run or already closed.
func (s *execStream) Close() error {
	s.mu.Lock()
	if s.state != streamIdle {
		s.mu.Unlock()
		return nil
	}
	s.state = streamClosed
	s.mu.Unlock()
	s.shutdown()
	return nil
}

// shutdown writes the exit spec, then waits for the stream to end; after
// closeTimeout it tears the connection down regardless. The exit spec,
// rather than stdin EOF, is what ends the wrapper, because EOF cannot be
// sent to a terminal (see execStream).
func (s *execStream) shutdown() {
	defer s.conn.abort()
	_ = s.conn.writeStdin([]byte(exitSpec))
	timer := time.NewTimer(closeTimeout)
	defer timer.Stop()
	select {
	case <-s.done:
	case <-timer.C:
		s.log.Warn("exec wrapper did not exit when closed; tearing its stream down")
		s.conn.abort()
		<-s.done
	}
}
