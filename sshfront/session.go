package sshfront

import (
	"cmp"
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/scheduler"
	"github.com/podgate/podgate/sshfront/recording"
)

// noticeGrace bounds how long a session waits for its last server messages
// to be written before it sends the exit status anyway; a client that stops
// reading must not keep a session (and its pod) forever.
const noticeGrace = 5 * time.Second

// signalBuffer is how many signals may wait for the backend; more are
// dropped with a log line rather than blocking the request loop.
const signalBuffer = 8

// session is one session channel. The request loop (requests) fills pty and
// env and then hands over to serve through the start channel; after that
// the loop only feeds resize and signals. The channel send orders the two,
// so pty and env need no lock.
type session struct {
	c   *conn
	num int
	log *slog.Logger

	ch      ssh.Channel
	pty     *scheduler.Pty
	env     []envVar
	resize  chan scheduler.WindowSize
	signals chan string
	// rec is the session's recording once it runs, for the request loop's
	// resizes; nil when it is not recorded.
	rec atomic.Pointer[recording.Session]

	// notices tracks asynchronous server messages (NotifyAll, warnings).
	notices sync.WaitGroup

	// mu protects the following.
	mu       sync.Mutex
	noticeW  io.Writer // stderr, or the terminal once a pty is known
	nl       string    // "\n", or "\r\n" on a terminal
	finished bool      // no more notices once the exit status is being sent
	// cutReason is set when a connection limit ends the session;
	// cancelRun ends its running process (nil until it runs).
	cutReason string
	cancelRun context.CancelFunc
}

type envVar struct{ name, value string }

// startReq is the shell, exec or subsystem request that starts a session.
type startReq struct {
	kind      scheduler.Kind
	command   string
	subsystem string
}

// serve runs the session channel until its process exits or the client
// closes it.
func (s *session) serve(ctx context.Context, nch ssh.NewChannel) {
	defer s.c.endSession(s)
	ch, reqs, err := nch.Accept()
	if err != nil {
		s.log.Debug("accepting session channel", "err", err)
		return
	}
	s.ch = ch
	s.resize = make(chan scheduler.WindowSize, 1)
	s.signals = make(chan string, signalBuffer)
	s.setNoticeWriter(ch.Stderr(), "\n")
	m := s.c.srv.metrics
	m.sessionsActive.Inc()
	defer m.sessionsActive.Dec()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := make(chan startReq, 1)
	reqDone := make(chan struct{})
	go func() {
		defer close(reqDone)
		defer cancel() // the client closed the channel
		s.requests(reqs, start)
	}()
	defer func() {
		ch.Close()
		<-reqDone
	}()

	var st startReq
	select {
	case st = <-start:
	case <-ctx.Done():
		return
	}
	var original string
	if fc := s.c.auth.decision.Restrictions.ForceCommand; fc != "" {
		st, original = forced(st, fc)
	}
	startedAt := time.Now()
	s.c.active.touch()
	if s.pty != nil {
		s.setNoticeWriter(ch, "\r\n")
	}
	rec := sessionRecord{start: st, startedAt: startedAt, tty: s.pty != nil, original: original}
	defer func() { s.auditLine(rec) }()

	att, err := s.c.attach.wait(ctx, s.writeLine)
	if err == nil && s.c.srv.isShuttingDown() {
		err = scheduler.ErrShuttingDown
	}
	if err != nil {
		rec.err = err
		if ctx.Err() == nil {
			s.writeLine(scheduler.UserMessage(err))
			rec.status = scheduler.ExitStatus{Code: 1}
			s.finish(rec.status)
			s.c.failureWasShown()
		}
		return
	}
	if pn, ok := att.(podNamer); ok {
		rec.pod = pn.PodName()
	}
	rec.profile = att.Settings().Profile
	rec.status, rec.cut, rec.err = s.run(ctx, att, st, &rec)
	if rec.err != nil && rec.cut == "" && ctx.Err() == nil {
		s.log.Warn("session failed", "err", rec.err)
		s.writeLine(scheduler.UserMessage(rec.err))
	}
	s.finish(rec.status)
}

// run hands the process to the attachment; a connection limit (see
// limits.go) may cut it through cancelRun. A recorded terminal session is
// recorded, and an interactive one shown the profile's message of the day
// first. It returns the exit status and the reason the session was cut, if
// it was.
func (s *session) run(ctx context.Context, att scheduler.Attachment, st startReq, r *sessionRecord) (scheduler.ExitStatus, string, error) {
	settings := att.Settings()
	active := &s.c.active
	stdin, stdout, done, err := s.streams(settings, st)
	if err != nil {
		return scheduler.ExitStatus{Code: 1}, "", err
	}
	defer func() { r.recording, r.recordErr = done() }()
	if st.kind == scheduler.KindShell && s.pty != nil && !settings.DisableCommand {
		if text := motd(settings.MOTD, s.c.id.User, settings.Profile); text != "" {
			_, _ = io.WriteString(stdout, text)
		}
	}
	p := scheduler.Process{
		Kind:      st.kind,
		Command:   st.command,
		Subsystem: st.subsystem,
		Env:       s.environment(settings, r.original),
		Pty:       s.pty,
		Stdin:     stdin,
		Stdout:    stdout,
		Stderr:    activityWriter{w: s.ch.Stderr(), active: active},
		Resize:    s.resize,
		Signals:   s.signals,
	}
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	s.mu.Lock()
	s.cancelRun = cancelRun
	cut := s.cutReason
	s.mu.Unlock()
	if cut != "" {
		return scheduler.ExitStatus{Code: 1}, cut, nil
	}
	status, err := att.Run(runCtx, p)
	s.mu.Lock()
	s.cancelRun = nil
	cut = s.cutReason
	s.mu.Unlock()
	if err != nil {
		status = scheduler.ExitStatus{Code: 1}
	}
	if cut != "" {
		status = scheduler.ExitStatus{Code: 1}
	}
	return status, cut, err
}

// cut ends the session for a connection limit: msg is its last line, and
// its process, if running, is cancelled.
func (s *session) cut(reason, msg string) {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	s.cutReason = reason
	cancel := s.cancelRun
	s.mu.Unlock()
	s.notify(msg)
	if cancel != nil {
		cancel()
	}
}

// filterEnv keeps the variables the profile allows and logs the others by
// name (never by value) for the operator.
func (s *session) filterEnv(allow func(string) bool) map[string]string {
	env := make(map[string]string, len(s.env))
	var refused []string
	for _, v := range s.env {
		if allow != nil && allow(v.name) && !isReservedEnv(v.name) {
			env[v.name] = v.value
		} else {
			refused = append(refused, v.name)
		}
	}
	if len(refused) > 0 {
		s.log.Info("refused environment variables", "names", refused)
	}
	return env
}

// finish sends the exit status after any pending server message, then EOF
// and close. Output of the process has been written before Run returned.
func (s *session) finish(status scheduler.ExitStatus) {
	s.mu.Lock()
	s.finished = true
	s.mu.Unlock()
	waitBounded(&s.notices, noticeGrace)
	_, _ = s.ch.SendRequest("exit-status", false, exitStatusPayload(status.Code))
	if status.Signal != "" {
		_, _ = s.ch.SendRequest("exit-signal", false, exitSignalPayload(status.Signal))
	}
	_ = s.ch.CloseWrite()
	_ = s.ch.Close()
}

func (s *session) setNoticeWriter(w io.Writer, nl string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noticeW, s.nl = w, nl
}

// writeLine writes a server message synchronously, for use on the session's
// own goroutine before the process runs.
func (s *session) writeLine(msg string) {
	s.mu.Lock()
	w, nl := s.noticeW, s.nl
	s.mu.Unlock()
	_, _ = io.WriteString(w, msg+nl)
}

// notifyTerminal is notify for a session with a terminal only.
func (s *session) notifyTerminal(msg string) {
	s.mu.Lock()
	tty := s.nl == "\r\n"
	s.mu.Unlock()
	if tty {
		s.notify(msg)
	}
}

// notify writes a server message without blocking the caller; on a
// terminal it starts on a fresh line, since the process may be mid-line.
func (s *session) notify(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished || s.noticeW == nil {
		return
	}
	w, line := s.noticeW, msg+s.nl
	if s.nl == "\r\n" {
		line = "\r\n" + line
	}
	s.notices.Go(func() { _, _ = io.WriteString(w, line) })
}

// sessionRecord collects what the audit line reports.
type sessionRecord struct {
	start     startReq
	startedAt time.Time
	tty       bool
	pod       string // empty when the session never got one
	profile   string // as resolved by the scheduler; empty when none
	status    scheduler.ExitStatus
	cut       string
	err       error
	// original is what the client asked to run when a certificate's
	// force-command replaced it.
	original string
	// recording is the session's cast, when it was recorded.
	recording recording.Summary
	recordErr error
}

func (s *session) auditLine(r sessionRecord) {
	attrs := []any{
		"conn_id", s.c.connID, "session", s.num, "user", s.c.id.User, "profile", cmp.Or(r.profile, s.c.id.Profile),
		"remote", s.c.id.RemoteAddr, "pod", r.pod, "kind", kindName(r.start.kind), "command", r.start.command, "subsystem", r.start.subsystem,
		"tty", r.tty, "start", r.startedAt, "duration", time.Since(r.startedAt),
		"exit_code", r.status.Code, "exit_signal", r.status.Signal,
	}
	if r.cut != "" {
		attrs = append(attrs, "cut", r.cut)
	}
	if s.c.auth.decision.Restrictions.ForceCommand != "" {
		attrs = append(attrs, "forced_command", true, "original_command", r.original)
	}
	if r.recording.Path != "" {
		attrs = append(attrs, "recording", r.recording.Path, "recording_bytes", r.recording.Bytes,
			"recording_truncated", r.recording.Truncated, "unechoed_input_bytes", r.recording.UnechoedInput)
	}
	if r.recordErr != nil {
		attrs = append(attrs, "recording_error", r.recordErr.Error())
	}
	if r.err != nil {
		attrs = append(attrs, "error", r.err.Error())
	}
	s.c.srv.audit.Info("session", attrs...)
}

// activityReader and activityWriter record when bytes last moved, for the
// idle timeout, without adding any buffering.
type activityReader struct {
	r      io.Reader
	active *activity
}

func (a activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.active.touch()
	}
	return n, err
}

type activityWriter struct {
	w      io.Writer
	active *activity
}

func (a activityWriter) Write(p []byte) (int, error) {
	n, err := a.w.Write(p)
	if n > 0 {
		a.active.touch()
	}
	return n, err
}

// waitBounded waits for wg, but at most d.
func waitBounded(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

func kindName(k scheduler.Kind) string {
	switch k {
	case scheduler.KindShell:
		return "shell"
	case scheduler.KindExec:
		return "exec"
	case scheduler.KindSubsystem:
		return "subsystem"
	}
	return "unknown"
}
