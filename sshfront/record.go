package sshfront

import (
	"errors"
	"io"
	"strings"
	"time"

	"github.com/podgate/podgate/scheduler"
	"github.com/podgate/podgate/sshfront/recording"
)

// errRecordingUnavailable refuses a terminal session of a recording
// profile that cannot be recorded: recording is an audit promise, so a
// session that would go unrecorded does not start.
var errRecordingUnavailable = errors.New("session recording unavailable")

// startRecording opens the session's cast and makes it the target of the
// request loop's resizes.
func (s *session) startRecording(settings scheduler.Settings, st startReq) (*recording.Session, error) {
	dir := s.c.srv.cfg.Recordings
	refuse := func(err error) error {
		s.log.Error("refusing a terminal session that cannot be recorded", "profile", settings.Profile, "err", err)
		return &scheduler.Refusal{Err: err, Reason: "this session must be recorded and recording is not possible right now; please tell the operator"}
	}
	if dir == nil {
		return nil, refuse(errors.Join(errRecordingUnavailable, errors.New("no recording directory is configured (PODGATE_RECORD_DIR)")))
	}
	command := st.command
	if st.kind == scheduler.KindShell {
		command = "(login shell)"
	}
	cast, err := dir.Start(recording.Meta{
		ConnID: s.c.connID, Session: s.num, User: s.c.id.User, Profile: settings.Profile,
		Start: time.Now(), Term: s.pty.Term, Cols: s.pty.Size.Cols, Rows: s.pty.Size.Rows,
		Command: commandLabel(command), Input: settings.Record == scheduler.RecordInput, MaxBytes: settings.RecordMaxBytes,
	})
	if err != nil {
		return nil, refuse(errors.Join(errRecordingUnavailable, err))
	}
	s.rec.Store(cast)
	return cast, nil
}

// streams returns the session's stdin and stdout, through a recording
// when the profile records terminal sessions; done ends the recording and
// reports it (a zero Summary when there is none).
func (s *session) streams(settings scheduler.Settings, st startReq) (io.Reader, io.Writer, func() (recording.Summary, error), error) {
	var stdin io.Reader = activityReader{r: s.ch, active: &s.c.active}
	var stdout io.Writer = activityWriter{w: s.ch, active: &s.c.active}
	if !settings.Record.Enabled() || s.pty == nil {
		return stdin, stdout, func() (recording.Summary, error) { return recording.Summary{}, nil }, nil
	}
	cast, err := s.startRecording(settings, st)
	if err != nil {
		return nil, nil, nil, err
	}
	return recordedReader{r: stdin, cast: cast}, recordedWriter{w: stdout, cast: cast}, cast.Close, nil
}

// recordedReader passes what the client types to the recording.
type recordedReader struct {
	r    io.Reader
	cast *recording.Session
}

func (r recordedReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.cast.Input(p[:n])
	}
	return n, err
}

// recordedWriter passes what the terminal shows to the recording, after
// the client was sent it.
type recordedWriter struct {
	w    io.Writer
	cast *recording.Session
}

func (w recordedWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if n > 0 {
		w.cast.Output(p[:n])
	}
	return n, err
}

// commandLabel shortens a command for a cast header.
func commandLabel(c string) string {
	if len(c) > 200 {
		c = c[:200] + "..."
	}
	return strings.ToValidUTF8(c, "\uFFFD")
}
