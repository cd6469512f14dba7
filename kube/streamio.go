package kube

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"sync"

	"k8s.io/client-go/tools/remotecommand"

	"github.com/podgate/podgate/scheduler"
)

// The plumbing between client-go's stream copies and the user's writers.

// markerWriter receives the exec's stdout. It consumes everything up to
// and including the wrapper's ready line, publishes the PID and terminal
// settings from it, and, on a terminal, also drops everything up to and
// including the go line (the echo of the spec; see wrapper.go); it passes
// the rest to out. client-go, or the stream's read loop, writes from a
// single goroutine.
type markerWriter struct {
	out   *gate
	ready chan struct{} // closed once the ready line has been seen
	// started is closed once the go line has been seen; nil on a plain
	// stream, which has none.
	started chan struct{}

	mu      sync.Mutex // mu protects the following
	stage   markerStage
	pid     int
	term    *termState
	pending []byte        // unscanned bytes that may hold a marker line
	noise   limitedBuffer // what the wrapper printed before the ready line, for errors
}

// markerStage is how far markerWriter has read.
type markerStage int

const (
	beforeReady markerStage = iota // dropping up to the ready line
	beforeGo                       // dropping the spec's echo up to the go line
	passing                        // forwarding the command's output
)

// maxPending bounds the bytes searched for a marker line.
const maxPending = 4096

func (m *markerWriter) Write(p []byte) (int, error) {
	m.mu.Lock()
	if m.stage == passing {
		m.mu.Unlock()
		return m.out.Write(p)
	}
	m.pending = append(m.pending, p...)
	rest := m.scanLocked()
	m.mu.Unlock()
	if len(rest) > 0 {
		if _, err := m.out.Write(rest); err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

// scanLocked moves through the stages as far as pending allows, and returns
// the bytes to forward.
func (m *markerWriter) scanLocked() []byte {
	if m.stage == beforeReady {
		line, ok := m.takeLineLocked(readyPrefix, true)
		if !ok {
			return nil
		}
		pidText, termText, _ := strings.Cut(line, " ")
		if pid, err := strconv.Atoi(pidText); err == nil && pid > 0 {
			m.pid = pid // else signals cannot be delivered; the ready line is still honoured
		}
		if ts, ok := parseTermState(termText); ok {
			m.term = &ts
		}
		m.stage = passing
		if m.started != nil {
			m.stage = beforeGo
		}
		close(m.ready)
	}
	if m.stage == beforeGo {
		if _, ok := m.takeLineLocked(goLine, false); !ok {
			return nil
		}
		m.stage = passing
		close(m.started)
	}
	rest := m.pending
	m.pending = nil
	return rest
}

// takeLineLocked looks for a complete line starting with prefix in pending.
// When it finds one it drops pending up to the line's end and returns the
// rest of the line after prefix. Bytes that cannot start the line are
// dropped (into noise, when keep is set).
func (m *markerWriter) takeLineLocked(prefix string, keep bool) (string, bool) {
	drop := func(b []byte) {
		if keep {
			m.noise.Write(b)
		}
	}
	i := bytes.Index(m.pending, []byte(prefix))
	if i < 0 {
		// Keep a tail that may be the start of a prefix split across writes.
		if tail := len(prefix) - 1; len(m.pending) > tail {
			cut := len(m.pending) - tail
			drop(m.pending[:cut])
			m.pending = append([]byte(nil), m.pending[cut:]...)
		}
		return "", false
	}
	j := bytes.IndexByte(m.pending[i:], '\n')
	if j < 0 {
		if len(m.pending) > maxPending {
			drop(m.pending)
			m.pending = nil
		}
		return "", false
	}
	drop(m.pending[:i])
	line := strings.TrimSuffix(string(m.pending[i+len(prefix):i+j]), "\r")
	m.pending = m.pending[i+j+1:]
	return line, true
}

// readyPID returns the PID from the ready line, 0 if it had none.
func (m *markerWriter) readyPID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pid
}

// readyTerm returns the terminal settings from the ready line, nil if it
// had none.
func (m *markerWriter) readyTerm() *termState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.term
}

// noiseString returns what the wrapper printed before its ready line.
func (m *markerWriter) noiseString() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.noise.String() + string(m.pending)
}

// gate forwards an output stream to the user's writer once Run attaches
// one. Until then it keeps the first bytes (the wrapper's own diagnostics)
// for error messages and drops the rest; after detach it drops everything.
type gate struct {
	mu    sync.Mutex // mu protects w and early
	w     io.Writer
	early limitedBuffer
}

func (g *gate) Write(p []byte) (int, error) {
	g.mu.Lock()
	w := g.w
	if w == nil {
		g.early.Write(p)
	}
	g.mu.Unlock()
	if w == nil {
		return len(p), nil
	}
	return w.Write(p)
}

// attach starts forwarding to w; a nil w discards.
func (g *gate) attach(w io.Writer) {
	if w == nil {
		w = io.Discard
	}
	g.mu.Lock()
	g.w = w
	g.mu.Unlock()
}

// detach stops forwarding; later writes are dropped.
func (g *gate) detach() { g.attach(io.Discard) }

// earlyString returns the bytes written before attach.
func (g *gate) earlyString() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.early.String()
}

// sizeQueue feeds terminal sizes to client-go. Only the latest size not yet
// sent matters, so push replaces a pending one instead of blocking. Next
// returns nil once the stream ends, which ends client-go's resize goroutine.
type sizeQueue struct {
	ch   chan remotecommand.TerminalSize // capacity 1
	done <-chan struct{}
}

var _ remotecommand.TerminalSizeQueue = (*sizeQueue)(nil)

// Next blocks until a new size or the end of the stream.
func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	select {
	case size := <-q.ch:
		return &size
	case <-q.done:
		return nil
	}
}

// push queues size, replacing any size not yet sent. It must not be called
// concurrently with itself.
func (q *sizeQueue) push(ws scheduler.WindowSize) {
	size := remotecommand.TerminalSize{Width: ws.Cols, Height: ws.Rows}
	for {
		select {
		case q.ch <- size:
			return
		default:
		}
		select {
		case <-q.ch:
		default:
		}
	}
}
