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

// markerWriter receives the exec's stdout. It consumes everything up to and
// including the wrapper's ready line, publishes the PID from it, and passes
// the rest to out. client-go writes from a single goroutine.
type markerWriter struct {
	out   *gate
	ready chan struct{} // closed once the ready line has been seen

	mu      sync.Mutex // mu protects the following
	found   bool
	pid     int
	pending []byte        // unscanned bytes that may hold the ready line
	noise   limitedBuffer // what the wrapper printed before it, for errors
}

// maxPending bounds the bytes searched for the ready line.
const maxPending = 4096

func (m *markerWriter) Write(p []byte) (int, error) {
	m.mu.Lock()
	if m.found {
		m.mu.Unlock()
		return m.out.Write(p)
	}
	m.pending = append(m.pending, p...)
	rest, found := m.scanLocked()
	m.mu.Unlock()
	if found && len(rest) > 0 {
		if _, err := m.out.Write(rest); err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

// scanLocked looks for a complete ready line in pending. When it finds one
// it records the PID, closes ready, and returns the bytes after the line.
func (m *markerWriter) scanLocked() ([]byte, bool) {
	i := bytes.Index(m.pending, []byte(readyPrefix))
	if i < 0 {
		// Keep a tail that may be the start of a prefix split across writes.
		if keep := len(readyPrefix) - 1; len(m.pending) > keep {
			cut := len(m.pending) - keep
			m.noise.Write(m.pending[:cut])
			m.pending = append([]byte(nil), m.pending[cut:]...)
		}
		return nil, false
	}
	j := bytes.IndexByte(m.pending[i:], '\n')
	if j < 0 {
		if len(m.pending) > maxPending {
			m.noise.Write(m.pending)
			m.pending = nil
		}
		return nil, false
	}
	m.noise.Write(m.pending[:i])
	line := strings.TrimSuffix(string(m.pending[i+len(readyPrefix):i+j]), "\r")
	if pid, err := strconv.Atoi(line); err == nil && pid > 0 {
		m.pid = pid // else signals cannot be delivered; the ready line is still honoured
	}
	rest := m.pending[i+j+1:]
	m.pending = nil
	m.found = true
	close(m.ready)
	return rest, true
}

// readyPID returns the PID from the ready line, 0 if it had none.
func (m *markerWriter) readyPID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pid
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
