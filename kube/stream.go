package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"k8s.io/client-go/tools/remotecommand"
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
// Goroutines: one runs the client-go stream for the stream's whole life and
// closes done when it ends. A stdin feeder writes the hello, then waits for
// Run (or Close) to hand it the spec and the user's stdin; it ends with the
// stream, or, once copying the user's stdin, when that stdin ends (a Read
// cannot be interrupted, so Run does not wait for it). Run adds resize and
// signal forwarders, which end with the stream and which Run waits for.
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

	cancel context.CancelFunc // tears the connection down
	done   chan struct{}      // closed when the client-go stream has returned
	result error              // the stream's outcome; written before done is closed

	stdinR *io.PipeReader // read by client-go's stdin copier
	stdinW *io.PipeWriter // written only by the feeder
	feed   chan stdinFeed // to the feeder; capacity 1, sent to at most once
	stdout *markerWriter
	stderr *gate      // nil for a terminal, whose streams are merged
	sizes  *sizeQueue // nil without a terminal

	mu    sync.Mutex // mu protects state
	state streamState
}

// start opens an exec stream running the wrapper. With waitReady it returns
// only after the wrapper's ready line has arrived, so the stream is proven
// open and, for a terminal, in raw mode.
func (e *Executor) start(ctx context.Context, pod scheduler.PodRef, tty, waitReady bool) (*execStream, error) {
	pod, err := e.resolveContainer(ctx, pod)
	if err != nil {
		return nil, err
	}
	ex, err := e.remoteExecutor(pod, wrapperArgv(tty), tty, true)
	if err != nil {
		return nil, fmt.Errorf("opening exec stream in pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	// The stream outlives ctx (a prepared stream waits in a pool); ctx
	// bounds only the wait below.
	streamCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stdinR, stdinW := io.Pipe()
	s := &execStream{
		e:      e,
		pod:    pod,
		tty:    tty,
		log:    e.log.With("pod", pod.Namespace+"/"+pod.Name, "container", pod.Container),
		cancel: cancel,
		done:   make(chan struct{}),
		stdinR: stdinR,
		stdinW: stdinW,
		feed:   make(chan stdinFeed, 1),
		stdout: &markerWriter{out: &gate{}, ready: make(chan struct{})},
	}
	opts := remotecommand.StreamOptions{Stdin: stdinR, Stdout: s.stdout, Tty: tty}
	if tty {
		s.sizes = &sizeQueue{ch: make(chan remotecommand.TerminalSize, 1), done: s.done}
		opts.TerminalSizeQueue = s.sizes
	} else {
		s.stderr = &gate{}
		opts.Stderr = s.stderr
	}
	go s.stream(streamCtx, ex, opts)
	go s.feedStdin()
	if !waitReady {
		return s, nil
	}
	select {
	case <-s.stdout.ready:
		return s, nil
	case <-s.done:
		cancel()
		return nil, e.streamError(pod, "starting exec wrapper", s.startFailure())
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
// client-go's WebSocket executor leaks its goroutines (the stream
// handler, its stdin, stdout, stderr and error-stream copiers) when its
// context is cancelled in the instant between the upgrade and the start of
// its read loop: the loop then fails to set its first read deadline on the
// closed connection and returns without closing its stream pipes. A cancel
// that arrives while the upgrade is in flight lands exactly there, because
// the upgrade does not abort on it. So a stream is cancelled only once its
// ready line has arrived, which proves the read loop runs, or once it has
// ended by itself; one that shows neither within closeTimeout is cancelled
// regardless, its upgrade being long over or hung by then. A command that
// started meanwhile gets SIGHUP first, as a closing terminal would send.
// shutdown, for a stream whose spec has not been sent, follows the same
// rule by waiting closeTimeout before it cancels.
func (s *execStream) teardown() {
	timer := time.NewTimer(closeTimeout)
	defer timer.Stop()
	select {
	case <-s.stdout.ready:
		s.hangup()
	case <-s.done:
	case <-timer.C:
	}
	s.cancel()
	<-s.done
}

// stream runs the client-go stream to its end.
func (s *execStream) stream(ctx context.Context, ex remotecommand.Executor, opts remotecommand.StreamOptions) {
	s.result = ex.StreamWithContext(ctx, opts)
	// Unblock anyone still writing the spec or the user's stdin.
	s.stdinR.CloseWithError(errStreamEnded)
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
	case errors.As(s.result, &exitErr) && exitErr.ExitStatus() == 126:
		return fmt.Errorf("wrapper could not set up the terminal (is stty installed?): %w; output %q", s.result, output)
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
	spec, err := encodeSpec(cmd.Argv, cmd.Env, cmd.Pty)
	if err != nil {
		s.shutdown()
		return scheduler.ExitStatus{}, fmt.Errorf("running in pod %s/%s: %w", s.pod.Namespace, s.pod.Name, err)
	}
	select {
	case <-s.done:
		s.cancel()
		s.log.Info("prepared exec stream ended while idle; using a fresh one", "err", s.result)
		return s.e.Exec(ctx, s.pod, cmd)
	default:
	}
	return s.run(ctx, cmd, spec)
}

// run sends spec, splices the command's streams and waits for its exit.
func (s *execStream) run(ctx context.Context, cmd scheduler.Command, spec []byte) (scheduler.ExitStatus, error) {
	defer s.cancel()
	// Attach the outputs before the spec leaves: the command may write as
	// soon as the wrapper has read it.
	s.stdout.out.attach(cmd.Stdout)
	if s.stderr != nil {
		s.stderr.attach(cmd.Stderr)
	}
	if s.tty {
		s.sizes.push(cmd.Pty.Size)
	}
	s.feed <- stdinFeed{spec: spec, stdin: cmd.Stdin}

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
	// A client-go copy still in flight after a cancellation must not reach
	// the user's writers once Run has returned.
	s.stdout.out.detach()
	if s.stderr != nil {
		s.stderr.detach()
	}
	if ctxErr != nil {
		return scheduler.ExitStatus{}, fmt.Errorf("running command in pod %s/%s: %w", s.pod.Namespace, s.pod.Name, ctxErr)
	}
	return s.e.exitStatus(s.pod, s.result, sent)
}

// stdinFeed is what the feeder writes after the hello: a spec, then,
// optionally, the user's stdin.
type stdinFeed struct {
	spec  []byte
	stdin io.Reader
}

// feedStdin is the only writer of the stream's stdin: the hello, then the
// spec and the user's stdin once Run sends them. On a plain stream it then
// closes stdin so the command sees EOF; on a terminal it leaves it open
// (see execStream).
func (s *execStream) feedStdin() {
	if _, err := s.stdinW.Write([]byte(helloLine)); err != nil {
		return // the stream ended; whoever waits on done reports why
	}
	var f stdinFeed
	select {
	case f = <-s.feed:
	case <-s.done:
		return
	}
	if _, err := s.stdinW.Write(f.spec); err != nil {
		return
	}
	if f.stdin != nil {
		if _, err := io.Copy(s.stdinW, f.stdin); err != nil && !errors.Is(err, errStreamEnded) {
			s.log.Debug("copying stdin to pod", "err", err)
		}
	}
	if !s.tty {
		s.stdinW.Close()
	}
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
			s.sizes.push(size)
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

// shutdown hands the feeder the exit spec, then waits for the stream to
// end; after closeTimeout it tears the connection down regardless. The
// exit spec, rather than stdin EOF, is what ends the wrapper, because EOF
// cannot be sent to a terminal (see execStream).
func (s *execStream) shutdown() {
	defer s.cancel()
	s.feed <- stdinFeed{spec: []byte(exitSpec)}
	timer := time.NewTimer(closeTimeout)
	defer timer.Stop()
	select {
	case <-s.done:
	case <-timer.C:
		s.log.Warn("exec wrapper did not exit when closed; tearing its stream down")
		s.cancel()
		<-s.done
	}
}
