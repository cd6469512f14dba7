package kube

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/moby/spdystream/spdy"

	"github.com/podgate/podgate/scheduler"
)

// podgate's own client of the API server's SPDY exec protocol
// (v4.channel.k8s.io over SPDY/3.1), for plain exec streams (see
// Executor). It speaks the terminal variant too (the resize stream), but a
// terminal's SPDY fallback still takes client-go (see openExec). It replaces client-go's SPDY executor for the reason
// wsconn.go replaces its WebSocket one: an idle prepared stream is what a
// reserved pod costs its owner, and client-go's holds about 18 goroutines
// (moby/spdystream's read loop, 5 frame workers and 5 queue drainers,
// client-go's stream goroutine, two stdin copiers, stdout, stderr and
// error-stream copiers) and spdystream's buffers and zlib state. Here an
// idle stream holds one goroutine (serve, its read loop), a 4 KiB read
// buffer and no write buffer (writes borrow one from a pool).
//
// Protocol. The connection is an HTTP/1.1 POST to the pods/exec URL with
// Connection: Upgrade, Upgrade: SPDY/3.1 and X-Stream-Protocol-Version:
// v4.channel.k8s.io, answered by 101 Switching Protocols (spdydial.go). It
// then carries SPDY/3 frames, each an 8-byte header and a payload:
//   - control frames: 0x8003 (control bit, version 3), a 16-bit type, a
//     flags byte and a 24-bit length. podgate sends SYN_STREAM (type 1) to
//     open each of its streams, with a zlib-compressed header block naming
//     the stream's role in "streamtype"; the server answers each with
//     SYN_REPLY (2). The server may send RST_STREAM (3), PING (6),
//     GOAWAY (7), and frames that carry nothing for an exec (SETTINGS,
//     WINDOW_UPDATE, HEADERS); their header blocks are skipped, never
//     decompressed, since nothing in them matters here.
//   - data frames: a 31-bit stream id, a flags byte (FIN ends the
//     sender's half of the stream) and a 24-bit length, then the bytes.
//
// The streams, opened in client-go's order (v4 createStreams): error (1),
// stdin (3), stdout (5), then stderr (7) for a plain stream or resize (7)
// for a terminal. The server ends the exec by writing a JSON metav1.Status
// on the error stream (decoded as client-go's errorDecoderV4 does; see
// decodeExecStatus) and closing the connection. stdin's half-close is an
// empty data frame with FIN on the stdin stream; a resize is a JSON
// {"Width","Height"} line on the resize stream. Over SPDY, v5 means
// nothing v4 does not, so only v4 is asked for.
//
// States: opening (dial: SYN_STREAMs sent, SYN_REPLYs awaited by the
// dialing goroutine, which owns the reader), open (serve's read loop owns
// the reader; any goroutine may write stdin and resizes), stdinClosed (FIN
// sent on stdin: podgate writes nothing more, see below), ended (the server
// finished every stream it writes, or closed the connection: serve closes
// the connection and returns), aborted (abort closed the connection; serve
// returns at once).
//
// Nothing after stdin's close. spdyquiet.go says why a frame reaching a
// proxy's socket after the backend's end loses the tail of the output. So
// this client never pings, answers the server's pings only while stdin is
// open, and sends nothing at all after stdin's FIN: no GOAWAY or RST_STREAM
// either, until the server has ended (or abort is called). A dead peer is
// found by TCP keepalive, on by default for dialed connections.
//
// Backpressure: serve writes each data frame's bytes straight from its read
// buffer into stdout or stderr, so a slow reader of the output slows the
// connection, as it does the command. There is no flow control beyond TCP:
// SPDY/3's WINDOW_UPDATE is not used by the API server's or the kubelet's
// spdystream.

const (
	// spdyReadBuffer is each connection's read buffer.
	spdyReadBuffer = 4 << 10
	// spdyMaxData bounds a data frame podgate writes, so that a pooled
	// write buffer holds any frame with its header.
	spdyMaxData = 32 << 10
	// spdyHeaderLen is a frame header's size.
	spdyHeaderLen = 8
)

// The streams podgate opens, in order; the ids are SPDY's client-initiated
// odd numbers.
const (
	spdyErrorID  uint32 = 1
	spdyStdinID  uint32 = 3
	spdyStdoutID uint32 = 5
	spdyStderrID uint32 = 7 // plain streams only
	spdyResizeID uint32 = 7 // terminal streams only
)

// errExecAborted is what serve returns after abort.
var errExecAborted = errors.New("exec stream aborted")

// spdyExecConn is one SPDY exec connection. It implements execConn.
//
// Goroutines: serve is the read loop and owns br once the connection is
// open (the dialing goroutine owns it before). Writers (stdin, resizes,
// ping replies) share conn under wmu. abort may be called from anywhere.
type spdyExecConn struct {
	conn    net.Conn
	br      *bufio.Reader
	tty     bool
	buffers *sync.Pool // lends write buffers of spdyHeaderLen+spdyMaxData bytes

	// wmu serialises writes and protects stdinClosed and ended.
	wmu sync.Mutex
	// stdinClosed is set once stdin's FIN is written; podgate writes no
	// frame after it (see "Nothing after stdin's close").
	stdinClosed bool
	// ended is set when serve has returned or abort was called; writes
	// then fail with errStreamEnded.
	ended bool

	// amu protects aborted.
	amu     sync.Mutex
	aborted bool
}

var _ execConn = (*spdyExecConn)(nil)

// frameHeader is one frame's header.
type frameHeader struct {
	control bool
	typ     uint16 // a control frame's type
	stream  uint32 // a data frame's stream
	flags   byte
	length  int
}

// readHeader reads the next frame's header.
func (c *spdyExecConn) readHeader() (frameHeader, error) {
	var b [spdyHeaderLen]byte
	if _, err := io.ReadFull(c.br, b[:]); err != nil {
		return frameHeader{}, err
	}
	h := frameHeader{flags: b[4], length: int(b[5])<<16 | int(b[6])<<8 | int(b[7])}
	first := binary.BigEndian.Uint32(b[:4])
	if first&0x80000000 != 0 {
		h.control = true
		if v := uint16(first>>16) & 0x7fff; v != spdy.Version {
			return h, fmt.Errorf("SPDY version %d", v)
		}
		h.typ = uint16(first)
	} else {
		h.stream = first
	}
	return h, nil
}

// readControl reads a control frame's payload: the first four bytes (the
// stream or ping id of the frames that matter here) and the next four (a
// RST_STREAM's status), skipping the rest, header blocks included.
func (c *spdyExecConn) readControl(h frameHeader) (id, arg uint32, err error) {
	var b [8]byte
	n := min(h.length, len(b))
	if _, err := io.ReadFull(c.br, b[:n]); err != nil {
		return 0, 0, err
	}
	if _, err := c.br.Discard(h.length - n); err != nil {
		return 0, 0, err
	}
	return binary.BigEndian.Uint32(b[:4]) & 0x7fffffff, binary.BigEndian.Uint32(b[4:]), nil
}

// copyData passes a data frame's n bytes to w straight from the read
// buffer; a nil w drops them.
func (c *spdyExecConn) copyData(w io.Writer, n int) error {
	for n > 0 {
		if c.br.Buffered() == 0 {
			if _, err := c.br.Peek(1); err != nil {
				return err
			}
		}
		p, _ := c.br.Peek(min(n, c.br.Buffered()))
		if w != nil {
			if _, err := w.Write(p); err != nil {
				return &writeError{err}
			}
		}
		_, _ = c.br.Discard(len(p))
		n -= len(p)
	}
	return nil
}

// writeError is a failure of an output's writer, as opposed to the
// connection's.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// serve reads the connection until the exec ends; see execConn.
func (c *spdyExecConn) serve(stdout, stderr io.Writer) error {
	defer c.finish()
	var (
		status   []byte
		statusOK bool // the error stream has data, or ended
		pending  = map[uint32]bool{spdyErrorID: true, spdyStdoutID: true}
	)
	if !c.tty {
		pending[spdyStderrID] = true
		if stderr == nil {
			stderr = io.Discard
		}
	}
	errorStream := &limitedWriter{buf: &status, max: maxStatusBytes}
	for len(pending) > 0 {
		h, err := c.readHeader()
		if err != nil {
			if c.isAborted() {
				return errExecAborted
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				break // the server closed the connection
			}
			return fmt.Errorf("reading exec stream: %w", err)
		}
		if h.control {
			if err := c.handleControl(h, pending); err != nil {
				if c.isAborted() {
					return errExecAborted
				}
				return fmt.Errorf("reading exec stream: %w", err)
			}
			continue
		}
		var w io.Writer
		switch h.stream {
		case spdyStdoutID:
			w = stdout
		case spdyStderrID:
			if !c.tty {
				w = stderr
			}
		case spdyErrorID:
			w = errorStream
			statusOK = statusOK || h.length > 0
		}
		if err := c.copyData(w, h.length); err != nil {
			if we := (*writeError)(nil); errors.As(err, &we) {
				return fmt.Errorf("copying exec output: %w", we.err)
			}
			if c.isAborted() {
				return errExecAborted
			}
			return fmt.Errorf("reading exec stream: %w", err)
		}
		if h.flags&byte(spdy.DataFlagFin) != 0 {
			if h.stream == spdyErrorID {
				statusOK = true
			}
			delete(pending, h.stream)
		}
	}
	if !statusOK {
		return errors.New("exec stream closed without the command's exit status")
	}
	if len(status) == 0 {
		return nil // as client-go reads an error stream ended empty
	}
	return decodeExecStatus(status)
}

// handleControl acts on one control frame read by serve: a RST_STREAM
// ends a stream the server writes, a ping is answered while stdin is open.
func (c *spdyExecConn) handleControl(h frameHeader, pending map[uint32]bool) error {
	id, _, err := c.readControl(h)
	if err != nil {
		return err
	}
	switch h.typ {
	case uint16(spdy.TypeRstStream):
		delete(pending, id)
	case uint16(spdy.TypePing):
		c.answerPing(id)
	}
	return nil
}

// answerPing echoes the server's ping, unless stdin is closed or a write is
// in progress: the read loop must never wait for a writer, which may itself
// be waiting for the server to read, which may be waiting for this loop.
// A ping left unanswered costs nothing with the API server, which does not
// ping exec streams.
func (c *spdyExecConn) answerPing(id uint32) {
	if !c.wmu.TryLock() {
		return
	}
	defer c.wmu.Unlock()
	if c.stdinClosed || c.ended {
		return
	}
	var b [spdyHeaderLen + 4]byte
	putControlHeader(b[:], spdy.TypePing, 0, 4)
	binary.BigEndian.PutUint32(b[8:], id)
	_, _ = c.conn.Write(b[:])
}

func putControlHeader(b []byte, typ spdy.ControlFrameType, flags byte, length int) {
	binary.BigEndian.PutUint16(b[0:], 0x8000|spdy.Version)
	binary.BigEndian.PutUint16(b[2:], uint16(typ))
	b[4] = flags
	b[5], b[6], b[7] = byte(length>>16), byte(length>>8), byte(length)
}

// writeDataLocked sends p on stream id in frames of at most spdyMaxData
// bytes, the last with FIN when fin is set; one empty frame when p is.
func (c *spdyExecConn) writeDataLocked(id uint32, p []byte, fin bool) error {
	bufp := c.buffers.Get().(*[]byte)
	defer c.buffers.Put(bufp)
	for first := true; first || len(p) > 0; first = false {
		n := min(len(p), spdyMaxData)
		b := (*bufp)[:spdyHeaderLen+n]
		binary.BigEndian.PutUint32(b, id&0x7fffffff)
		var flags byte
		if fin && n == len(p) {
			flags = byte(spdy.DataFlagFin)
		}
		b[4], b[5], b[6], b[7] = flags, byte(n>>16), byte(n>>8), byte(n)
		copy(b[spdyHeaderLen:], p[:n])
		if _, err := c.conn.Write(b); err != nil {
			return fmt.Errorf("writing exec stream: %w", err)
		}
		p = p[n:]
	}
	return nil
}

// write sends p on stream id, unless stdin is closed or the stream ended.
func (c *spdyExecConn) write(id uint32, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	switch {
	case c.ended:
		return errStreamEnded
	case c.stdinClosed:
		return errStdinClosed
	}
	return c.writeDataLocked(id, p, false)
}

func (c *spdyExecConn) writeStdin(p []byte) error { return c.write(spdyStdinID, p) }

// closeStdin sends stdin's FIN, the last frame podgate writes on the
// connection (see "Nothing after stdin's close").
func (c *spdyExecConn) closeStdin() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.stdinClosed || c.ended {
		return nil
	}
	c.stdinClosed = true
	return c.writeDataLocked(spdyStdinID, nil, true)
}

func (c *spdyExecConn) resize(size scheduler.WindowSize) error {
	if !c.tty {
		return errors.New("resizing a stream without a terminal")
	}
	b, err := json.Marshal(struct{ Width, Height uint16 }{size.Cols, size.Rows})
	if err != nil {
		return err
	}
	// client-go's json.Encoder ends each size with a newline.
	return c.write(spdyResizeID, append(b, '\n'))
}

// abort closes the connection; serve returns errExecAborted.
func (c *spdyExecConn) abort() {
	c.amu.Lock()
	c.aborted = true
	c.amu.Unlock()
	_ = c.conn.Close()
}

func (c *spdyExecConn) isAborted() bool {
	c.amu.Lock()
	defer c.amu.Unlock()
	return c.aborted
}

// finish ends the connection when serve returns: the server has ended (or
// the connection failed, or abort was called), so closing it loses nothing.
// A writer blocked in conn.Write is released by the close; ended is set
// after it, under wmu, so no later write starts.
func (c *spdyExecConn) finish() {
	_ = c.conn.Close()
	c.wmu.Lock()
	c.ended = true
	c.wmu.Unlock()
}

// limitedWriter appends to buf up to max bytes and drops the rest.
type limitedWriter struct {
	buf *[]byte
	max int
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	if room := w.max - len(*w.buf); room > 0 {
		*w.buf = append(*w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
