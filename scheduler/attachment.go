package scheduler

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// argv maps a session's request to the command run in the pod: the shell,
// the exec wrapper with the user's command as one single argument (never
// split or interpreted by podgate), or a subsystem's argv.
func argv(pol Policy, p Process) ([]string, error) {
	if pol.DisableCommand && p.Kind != KindSubsystem {
		return nil, fmt.Errorf("%s in profile %q: %w", kindName(p.Kind), pol.Name, ErrCommandDisabled)
	}
	switch p.Kind {
	case KindShell:
		return slices.Clone(pol.Shell), nil
	case KindExec:
		return append(slices.Clone(pol.ExecWrapper), p.Command), nil
	case KindSubsystem:
		a, ok := pol.Subsystems[p.Subsystem]
		if !ok {
			return nil, fmt.Errorf("subsystem %q in profile %q: %w", p.Subsystem, pol.Name, ErrUnknownSubsystem)
		}
		return slices.Clone(a), nil
	}
	return nil, fmt.Errorf("process kind %d: %w", p.Kind, ErrUnknownSubsystem)
}

// settings derives what sshfront needs from a policy.
func settings(pol Policy) Settings {
	allow := slices.Clone(pol.EnvAllow)
	return Settings{
		Profile:        pol.Name,
		Mode:           pol.Mode,
		AllowEnv:       func(name string) bool { return envAllowed(allow, name) },
		PortForwarding: pol.PortForwarding,
		IdleTimeout:    pol.IdleTimeout,
		MaxSession:     pol.MaxSession,
		DisableCommand: pol.DisableCommand,
		MOTD:           pol.MOTD,
		Record:         pol.Record,
		RecordMaxBytes: pol.RecordMaxBytes,
	}
}

// envAllowed reports whether name matches one of the allowlist's entries:
// an exact name, or a prefix followed by "*" (LC_* matches LC_ALL), as
// PODGATE_ENV_ALLOW documents.
func envAllowed(allow []string, name string) bool {
	for _, a := range allow {
		if prefix, ok := strings.CutSuffix(a, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if a == name {
			return true
		}
	}
	return false
}

// runIn runs one process in a held pod, on a prepared stream of the right
// kind when one is at hand, else over a fresh exec.
//
// A pod handed out before its claim record was written (Pod.Record) runs
// the command at once; should the record fail, the command is stopped and
// the record's error, which tells the user plainly, is returned.
//
// The attach latency is recorded once per attachment (first guards it):
// from the connection's acceptance to the first byte the user's first
// command writes, or to its end when it writes nothing, whichever comes
// first. That is the earliest moment podgate can see the command running.
// At the same moment the login's API trace (nil after the first session)
// ends and its count is recorded. result is warm or cold.
func (s *Scheduler) runIn(ctx context.Context, id Identity, pol Policy, pod *Pod, p Process, prep Prepared, first *sync.Once, trace *apiTrace, result string) (ExitStatus, error) {
	args, err := argv(pol, p)
	if err == nil {
		err = pod.Record.Err()
	}
	if err != nil {
		if prep != nil {
			_ = prep.Close()
		}
		return ExitStatus{}, err
	}
	ctx = withAPITrace(ctx, trace)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWatching := watchRecord(runCtx, pod.Record, cancel)
	defer stopWatching()
	start := s.clock.Now()
	mark := func() {
		first.Do(func() {
			s.metrics.phase.WithLabelValues("exec_start").Observe(s.clock.Since(start).Seconds())
			s.metrics.attach.WithLabelValues(pol.Name, string(pol.Mode), result).Observe(s.since(id.AcceptedAt))
			if trace != nil {
				s.metrics.apiRequests.WithLabelValues(pol.Name, result).Observe(float64(trace.end()))
			}
		})
	}
	cmd := Command{
		Argv: args, Env: p.Env, Pty: p.Pty,
		Stdin: p.Stdin, Stdout: notifyWriter(p.Stdout, mark), Stderr: notifyWriter(p.Stderr, mark),
		Resize: p.Resize, Signals: p.Signals,
	}
	defer func() {
		mark()
		s.metrics.session.WithLabelValues(pol.Name, string(pol.Mode)).Observe(s.clock.Since(start).Seconds())
	}()
	var st ExitStatus
	if prep != nil {
		st, err = prep.Run(runCtx, cmd)
	} else {
		st, err = s.execer.Exec(runCtx, pod.Ref, cmd)
	}
	// The command may end before its pod's claim record is written; its
	// outcome still decides what the user is told.
	select {
	case <-pod.Record.Done():
	case <-ctx.Done():
	}
	if rerr := pod.Record.Err(); rerr != nil {
		return ExitStatus{}, rerr
	}
	if err != nil {
		return st, fmt.Errorf("running %s in pod %q: %w", kindName(p.Kind), pod.Ref.Name, err)
	}
	return st, nil
}

// watchRecord calls cancel should rec fail before ctx ends; the returned
// func stops watching. It starts no goroutine for a record already written.
func watchRecord(ctx context.Context, rec *ClaimRecord, cancel func()) func() {
	select {
	case <-rec.Done():
		return func() {}
	default:
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-rec.Done():
			if rec.Err() != nil {
				cancel()
			}
		case <-ctx.Done():
		case <-stop:
		}
	})
	return func() { close(stop); wg.Wait() }
}

func kindName(k Kind) string {
	switch k {
	case KindShell:
		return "shell"
	case KindExec:
		return "exec"
	case KindSubsystem:
		return "subsystem"
	}
	return "kind " + strconv.Itoa(int(k))
}

// notifyWriter calls mark before the first write to w. A nil w stays nil.
func notifyWriter(w io.Writer, mark func()) io.Writer {
	if w == nil {
		return nil
	}
	return &markWriter{w: w, mark: mark}
}

type markWriter struct {
	w    io.Writer
	mark func()
}

func (m *markWriter) Write(b []byte) (int, error) {
	m.mark()
	return m.w.Write(b)
}

// connAttachment is a connection-mode attachment: one pod for every
// session of the connection.
type connAttachment struct {
	s      *Scheduler
	id     Identity
	pol    Policy
	pod    *Pod
	key    string // UserKey of the user and profile
	done   func()
	result string // warm or cold, for the attach metric
	// reconnect is what the login found parked (same_pod, or why its
	// pod is new), for the audit line; set before the attachment is
	// returned.
	reconnect ReconnectResult
	first     sync.Once
	trace     *apiTrace       // the login's API trace, for its first session
	ctx       context.Context // ends on Close; spare preparation uses it
	cancel    context.CancelFunc
	wg        sync.WaitGroup // spare preparation in flight

	// mu protects the following.
	mu     sync.Mutex
	tty    Prepared // spare prepared streams, nil when none
	plain  Prepared
	closed bool
	parked bool // Close parked the pod
}

var _ Attachment = (*connAttachment)(nil)

func newConnAttachment(s *Scheduler, id Identity, pol Policy, pod *Pod, key, result string, trace *apiTrace, done func()) *connAttachment {
	ctx, cancel := context.WithCancel(context.Background())
	a := &connAttachment{s: s, id: id, pol: pol, pod: pod, key: key, done: done, result: result, trace: trace,
		ctx: ctx, cancel: cancel}
	if pod.Stream != nil && pod.Stream.TTY() {
		a.tty = pod.Stream
	} else {
		a.plain = pod.Stream
	}
	pod.Stream = nil
	return a
}

func (a *connAttachment) Settings() Settings { return settings(a.pol) }

// PodName is the connection's pod, for the SSH front end's audit lines.
func (a *connAttachment) PodName() string { return a.pod.Ref.Name }

// ReconnectAudit says, for the connection's audit line, whether the login
// got its parked pod back ("same_pod") or a new one ("new", or "new_" and
// why its parked pod was gone), and whether the pod was parked when the
// connection closed; reconnect is "" in profiles without a window.
func (a *connAttachment) ReconnectAudit() (reconnect string, parked bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.s.window(a.pol) <= 0:
		return "", false
	case a.reconnect == ReconnectSamePod:
		return string(ReconnectSamePod), a.parked
	case a.reconnect == ReconnectNone:
		return "new", a.parked
	}
	return "new_" + string(a.reconnect), a.parked
}

// Run runs one session in the connection's pod.
func (a *connAttachment) Run(ctx context.Context, p Process) (ExitStatus, error) {
	if !a.s.pools.Alive(a.pod) {
		return ExitStatus{}, fmt.Errorf("pod %q: %w", a.pod.Ref.Name, ErrPodGone)
	}
	tty := p.Pty != nil
	a.mu.Lock()
	var prep Prepared
	if tty {
		prep, a.tty = a.tty, nil
	} else {
		prep, a.plain = a.plain, nil
	}
	closed := a.closed
	if !closed && prep != nil {
		// Added under mu, so Close's Wait (after it set closed) never
		// races an Add.
		a.wg.Add(1)
	}
	a.mu.Unlock()
	if closed {
		return ExitStatus{}, fmt.Errorf("attachment closed: %w", ErrPodGone)
	}
	if prep != nil {
		go a.spare(tty)
	}
	a.mu.Lock()
	trace := a.trace
	a.trace = nil
	a.mu.Unlock()
	return a.s.runIn(ctx, a.id, a.pol, a.pod, p, prep, &a.first, trace, a.result)
}

// spare prepares a fresh stream of one kind for the connection's next
// session; it runs in its own goroutine, counted in wg by the caller.
func (a *connAttachment) spare(tty bool) {
	defer a.wg.Done()
	prep, err := a.s.execer.Prepare(a.ctx, a.pod.Ref, tty)
	if err != nil {
		a.s.log.Debug("preparing spare stream", "pod", a.pod.Ref.Name, "err", err)
		return
	}
	a.mu.Lock()
	keep := !a.closed && ((tty && a.tty == nil) || (!tty && a.plain == nil))
	if keep {
		if tty {
			a.tty = prep
		} else {
			a.plain = prep
		}
	}
	a.mu.Unlock()
	if !keep {
		_ = prep.Close()
	}
}

// Close parks the pod for the profile's reconnect window, or releases it.
func (a *connAttachment) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	tty, plain := a.tty, a.plain
	a.tty, a.plain = nil, nil
	a.mu.Unlock()
	endPark := a.s.parks.begin(a.key)
	a.cancel()
	// Park (or release) before the slow part: closing prepared streams
	// and waiting for a spare one in preparation take round trips to the
	// kubelet, and a user who reconnects within them would otherwise
	// miss the parked pod and be given another. The pod's slot is given
	// back only once it is parked, so that the user's count never drops
	// while the park is in flight.
	switch {
	case a.pod.Record.Err() != nil:
		a.s.release(a.pod, fmt.Sprintf("the claim record for connection %s failed", a.id.ConnID))
	case !a.s.pools.Alive(a.pod):
		a.s.release(a.pod, fmt.Sprintf("connection %s of user %q closed; the pod is no longer ready", a.id.ConnID, a.id.User))
	case a.s.park(a.id, a.pol, a.key, a.pod, a.s.heldHere(a.key)-1):
		a.mu.Lock()
		a.parked = true
		a.mu.Unlock()
		// No connection id, as for Reconnected: repeats form a series.
		a.s.podEvent(a.pod, EventParked, fmt.Sprintf("kept for user %q to reconnect within %s", a.id.User, a.s.window(a.pol)))
	default:
		a.s.release(a.pod, fmt.Sprintf("connection %s of user %q closed", a.id.ConnID, a.id.User))
	}
	endPark()
	a.done()
	a.wg.Wait()
	for _, p := range []Prepared{tty, plain} {
		if p != nil {
			_ = p.Close()
		}
	}
	return nil
}

// sessionAttachment is a session-mode attachment: every session claims a
// pod of its own and deletes it afterwards.
type sessionAttachment struct {
	s        *Scheduler
	id       Identity
	pol      Policy
	progress Progress
	done     func()
	first    sync.Once

	// mu protects the following.
	mu     sync.Mutex
	n      int // sessions started, for claim names
	closed bool
}

var _ Attachment = (*sessionAttachment)(nil)

func newSessionAttachment(s *Scheduler, id Identity, pol Policy, progress Progress, done func()) *sessionAttachment {
	return &sessionAttachment{s: s, id: id, pol: pol, progress: progress, done: done}
}

func (a *sessionAttachment) Settings() Settings { return settings(a.pol) }

// Run claims a pod for this one session, runs the process and releases the
// pod, off the critical path, when the process ends.
func (a *sessionAttachment) Run(ctx context.Context, p Process) (ExitStatus, error) {
	a.mu.Lock()
	a.n++
	n, closed := a.n, a.closed
	a.mu.Unlock()
	if closed {
		return ExitStatus{}, fmt.Errorf("attachment closed: %w", ErrPodGone)
	}
	if _, err := argv(a.pol, p); err != nil {
		return ExitStatus{}, err
	}
	if a.s.isShuttingDown() {
		return ExitStatus{}, ErrShuttingDown
	}
	// The user's pod slot is given back when the session ends, as its
	// pod is released (the release itself runs off the critical path).
	var trace *apiTrace
	if n == 1 {
		trace = &apiTrace{}
	}
	var pod *Pod
	key := UserKey(a.id.User, a.pol.Name)
	claim := Claim{Identity: a.id, UserKey: key, Session: a.id.ConnID + "-" + strconv.Itoa(n)}
	donePod, err := a.s.admitPod(a.pol, a.id, key)
	if err == nil {
		defer donePod()
		pod, err = a.s.obtain(withAPITrace(ctx, trace), a.pol, claim, a.progress)
	}
	if err != nil {
		a.s.metrics.attach.WithLabelValues(a.pol.Name, string(a.pol.Mode), "failed").Observe(a.s.since(a.id.AcceptedAt))
		return ExitStatus{}, err
	}
	defer a.s.release(pod, fmt.Sprintf("session %s of user %q ended", claim.Session, a.id.User))
	result := claimResult(pod)
	a.s.claimed(pod, claim, result)
	// A stream of the other kind has no use: this pod serves one
	// session. Release closes it.
	var prep Prepared
	if pod.Stream != nil && pod.Stream.TTY() == (p.Pty != nil) {
		prep, pod.Stream = pod.Stream, nil
	}
	return a.s.runIn(ctx, a.id, a.pol, pod, p, prep, &a.first, trace, result)
}

// Close gives back the attachment's slot; session pods are already
// released as their sessions end.
func (a *sessionAttachment) Close() error {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.done()
	return nil
}
