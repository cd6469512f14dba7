package recording

import (
	"fmt"
	"os"
	"sync"
)

// maxBacklog bounds the encoded events waiting for the disk. A session
// never waits for the disk: when a stalled disk lets this much pile up,
// further events are dropped (and a marker in the cast says how much)
// rather than slowing the user's terminal.
const maxBacklog = 4 << 20

// spool writes one cast file from its own goroutine. Appends copy the
// line into memory and return at once; the writer goroutine moves the
// backlog to the file. It also enforces the recording's size limit.
type spool struct {
	f     *os.File
	limit int64 // bytes the file may hold
	kick  chan struct{}
	done  chan struct{} // closed when the writer goroutine has ended

	// mu protects the following.
	mu      sync.Mutex
	backlog []byte
	spare   []byte // the writer's last buffer, reused
	size    int64  // bytes accepted for the file so far
	full    bool   // the size limit was reached; nothing more is accepted
	closing bool
	err     error // the first write error; later appends are dropped
}

// newSpool starts the writer for f, which holds at most limit bytes.
func newSpool(f *os.File, limit int64) *spool {
	s := &spool{f: f, limit: limit, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go s.write()
	return s
}

// appendResult says what became of an appended line.
type appendResult int

const (
	appended appendResult = iota
	// droppedSlow: the backlog is full because the disk lags.
	droppedSlow
	// reachedLimit: this line would pass the size limit; nothing more is
	// accepted from now on.
	reachedLimit
	// refused: the limit was reached before, the spool is closing, or a
	// write failed.
	refused
)

// append queues encoded lines without waiting for the disk.
func (s *spool) append(lines []byte) appendResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.full || s.closing || s.err != nil:
		return refused
	case s.size+int64(len(lines)) > s.limit:
		s.full = true
		return reachedLimit
	case len(s.backlog)+len(lines) > maxBacklog:
		return droppedSlow
	}
	s.appendLocked(lines)
	return appended
}

// appendFinal queues a last line even past the size limit (the marker
// that says the limit was reached).
func (s *spool) appendFinal(line []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing && s.err == nil {
		s.appendLocked(line)
	}
}

func (s *spool) appendLocked(lines []byte) {
	s.backlog = append(s.backlog, lines...)
	s.size += int64(len(lines))
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// write is the writer goroutine: it flushes on every kick, and once more
// when close has closed the kick channel.
func (s *spool) write() {
	defer close(s.done)
	for range s.kick {
		s.flush()
	}
	s.flush()
}

// flush moves the backlog to the file.
func (s *spool) flush() {
	s.mu.Lock()
	buf := s.backlog
	s.backlog, s.spare = s.spare[:0], nil
	s.mu.Unlock()
	var err error
	if len(buf) > 0 {
		_, err = s.f.Write(buf)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spare = buf[:0]
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("writing recording: %w", err)
	}
}

// close writes the backlog, closes the file and reports the bytes written
// and the first error. It must be called once.
func (s *spool) close() (int64, error) {
	s.mu.Lock()
	s.closing = true
	// Under mu, so no append is sending on kick.
	close(s.kick)
	s.mu.Unlock()
	<-s.done
	err := s.f.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil && err != nil {
		s.err = fmt.Errorf("closing recording: %w", err)
	}
	return s.size, s.err
}
