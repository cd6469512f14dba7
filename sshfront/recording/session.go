package recording

import (
	"fmt"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Session records one terminal session as an asciinema v2 cast. Output,
// input and resizes arrive on different goroutines; none of them waits
// for the disk (see spool).
type Session struct {
	path  string
	input bool // record "i" events
	start time.Time
	clock clock.PassiveClock
	spool *spool
	dir   *Dir

	closeOnce sync.Once
	summary   Summary // valid once closeOnce has run
	closeErr  error

	// mu protects the following and orders the events in the file.
	mu        sync.Mutex
	gate      echoGate
	out, in   utf8Carry
	lost      int64 // bytes lost to a slow disk since the last marker
	truncated bool
	closed    bool
	scratch   []byte // event lines being encoded, reused
}

// Summary is what a finished recording reports for the audit trail.
type Summary struct {
	Path string
	// Bytes is the size of the cast file.
	Bytes int64
	// Truncated is set when the size limit stopped the recording.
	Truncated bool
	// UnechoedInput counts typed bytes left out of an input recording
	// because the terminal did not show them.
	UnechoedInput int64
}

// Path is the cast file.
func (s *Session) Path() string { return s.path }

// Output records bytes the terminal showed.
func (s *Session) Output(p []byte) {
	if len(p) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.truncated {
		return
	}
	t := s.clock.Since(s.start)
	lines := s.scratch[:0]
	if s.input {
		if echoed := s.gate.output(p); len(echoed) > 0 {
			lines = appendEvent(lines, t, codeInput, s.in.text(echoed))
		}
	}
	if text := s.out.text(p); len(text) > 0 {
		lines = appendEvent(lines, t, codeOutput, text)
	}
	s.emitLocked(t, lines)
	s.scratch = lines[:0]
}

// Input records typed bytes, when the recording includes input, as far as
// the echo gate lets them through.
func (s *Session) Input(p []byte) {
	if !s.input || len(p) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.truncated {
		return
	}
	if keep := s.gate.input(p); len(keep) > 0 {
		t := s.clock.Since(s.start)
		s.emitLocked(t, appendEvent(nil, t, codeInput, s.in.text(keep)))
	}
}

// Resize records a new terminal size.
func (s *Session) Resize(cols, rows uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.truncated {
		return
	}
	t := s.clock.Since(s.start)
	s.emitLocked(t, appendEvent(nil, t, codeResize, fmt.Sprintf("%dx%d", cols, rows)))
}

// emitLocked hands encoded lines to the spool, with a marker first when
// earlier lines were lost to a slow disk.
func (s *Session) emitLocked(t time.Duration, lines []byte) {
	if len(lines) == 0 {
		return
	}
	if s.lost > 0 {
		marker := appendEvent(nil, t, codeMarker, fmt.Sprintf("podgate: %d bytes of recording lost: the disk did not keep up", s.lost))
		lines = append(marker, lines...)
	}
	switch s.spool.append(lines) {
	case appended:
		s.lost = 0
	case droppedSlow:
		s.lost += int64(len(lines))
		s.dir.metrics.lost.Add(float64(len(lines)))
	case reachedLimit:
		s.truncated = true
		s.spool.appendFinal(appendEvent(nil, t, codeMarker, "podgate: recording stopped: size limit reached"))
	}
}

// Close ends the recording and reports it; later calls report the same.
// Printable input still waiting for its echo is dropped.
func (s *Session) Close() (Summary, error) {
	s.closeOnce.Do(func() { s.summary, s.closeErr = s.close() })
	return s.summary, s.closeErr
}

func (s *Session) close() (Summary, error) {
	s.mu.Lock()
	if !s.closed && !s.truncated {
		t := s.clock.Since(s.start)
		var lines []byte
		if s.input {
			if keep := s.gate.close(); len(keep) > 0 {
				lines = appendEvent(lines, t, codeInput, s.in.text(keep))
			}
			if rest := s.in.flush(); rest != "" {
				lines = appendEvent(lines, t, codeInput, rest)
			}
		}
		if rest := s.out.flush(); rest != "" {
			lines = appendEvent(lines, t, codeOutput, rest)
		}
		s.emitLocked(t, lines)
	}
	s.closed = true
	sum := Summary{Path: s.path, Truncated: s.truncated, UnechoedInput: s.gate.dropped}
	s.mu.Unlock()
	size, err := s.spool.close()
	sum.Bytes = size
	s.dir.finished(sum, err)
	return sum, err
}
