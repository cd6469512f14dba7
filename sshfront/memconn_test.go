package sshfront

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// memConn is a buffered in-memory net.Conn. net.Pipe is unbuffered, and
// both SSH peers write their version line before reading, so over net.Pipe
// they would wait for each other forever. memConn blocks only on channels,
// which testing/synctest treats as durably blocking, and honours read
// deadlines (the server's handshake timeout) with fake-time timers.
type memConn struct {
	in      chan []byte
	out     chan []byte
	pending []byte
	closed  chan struct{} // closed by our Close
	peerEOF chan struct{} // closed by the peer's Close
	once    *sync.Once

	// mu protects the deadline and its change signal.
	mu        sync.Mutex
	deadline  time.Time
	dlChanged chan struct{}
}

func memPipe() (net.Conn, net.Conn) {
	ab, ba := make(chan []byte, 4096), make(chan []byte, 4096)
	aClosed, bClosed := make(chan struct{}), make(chan struct{})
	a := &memConn{in: ba, out: ab, closed: aClosed, peerEOF: bClosed, once: new(sync.Once), dlChanged: make(chan struct{})}
	b := &memConn{in: ab, out: ba, closed: bClosed, peerEOF: aClosed, once: new(sync.Once), dlChanged: make(chan struct{})}
	return a, b
}

func (c *memConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		c.mu.Lock()
		dl, changed := c.deadline, c.dlChanged
		c.mu.Unlock()
		var timeout <-chan time.Time
		if !dl.IsZero() {
			t := time.NewTimer(time.Until(dl))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case b := <-c.in:
			c.pending = b
		case <-c.closed:
			return 0, net.ErrClosed
		case <-c.peerEOF:
			select {
			case b := <-c.in:
				c.pending = b
			default:
				return 0, io.EOF
			}
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		case <-changed:
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *memConn) Write(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.peerEOF:
		return 0, io.ErrClosedPipe
	default:
	}
	b := append([]byte(nil), p...)
	select {
	case c.out <- b:
		return len(p), nil
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.peerEOF:
		return 0, io.ErrClosedPipe
	}
}

func (c *memConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *memConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	close(c.dlChanged)
	c.dlChanged = make(chan struct{})
	return nil
}

func (c *memConn) SetReadDeadline(t time.Time) error { return c.SetDeadline(t) }
func (c *memConn) SetWriteDeadline(time.Time) error  { return nil }
func (c *memConn) LocalAddr() net.Addr               { return memAddr{} }
func (c *memConn) RemoteAddr() net.Addr              { return memAddr{} }

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "192.0.2.1:4242" }
