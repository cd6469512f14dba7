package kube

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/podgate/podgate/scheduler"
)

// podgate's own client of the API server's WebSocket exec protocol
// (v5.channel.k8s.io), for terminal exec streams (plain ones take SPDY;
// see Executor). It replaces client-go's
// WebSocket executor because an idle prepared stream is what a reserved pod
// costs its owner, and client-go's cannot be made small: measured with
// BenchmarkPreparedIdleCost, one idle terminal stream held 224 KiB of heap
// and 10 goroutines, of which about 160 KiB are buffers client-go sizes
// itself (a 32 KiB WebSocket read buffer, write buffer and demultiplexing
// buffer, and the 32 KiB buffers of its stdin and stdout copies, all held
// while the stream waits), and 8 goroutines are its own (the stream
// handler, its read loop, a heartbeat, and copiers for stdin, stdout, the
// error stream and resizes). Here an idle stream holds one goroutine (its
// read loop), a 4 KiB read buffer, no write buffer (writes borrow one from a
// pool), and no heartbeat goroutine (a timer pings it).
//
// Protocol: every message is binary, its first byte the stream: 0 stdin, 1
// stdout, 2 stderr, 3 the error stream (a metav1.Status ending the exec),
// 4 resize (JSON {"Width","Height"}); 255 followed by a stream id closes
// that stream (stdin's half-close).
//
// Nothing after stdin's close. The API server's stream translator closes
// the TCP connection as soon as the command's status is written, without
// reading what the client sent meanwhile; a frame that reaches a closed
// (or closing) socket makes the server's kernel answer with a reset and
// drop what it had not yet sent, which is the tail of the command's output
// and its status whenever the client reads slower than the command writes.
// So once stdin's close signal has gone out, the client writes no frame of
// its own: the heartbeat stops, and with it the read deadline it keeps
// (the connection's TCP keepalive, on by default for dialed connections,
// still finds a dead peer). The only frame left is gorilla's reply to the
// server's close frame, which comes after every byte the server sent. A
// terminal's stdin is never closed (see execStream), so a terminal stream
// is pinged until its end; a ping meeting the server's close there is the
// same race a keystroke typed at the shell's exit has.

const (
	// wsReadBuffer is each connection's read buffer; larger messages are
	// read through it in pieces.
	wsReadBuffer = 4 << 10
	// wsWriteBuffer is a pooled write buffer's size: a message's fragment.
	wsWriteBuffer = 32 << 10
	// wsPingPeriod is how often an open stream is pinged; a stream that
	// answers nothing (no message, no pong) for wsDeadline is dead.
	wsPingPeriod = 15 * time.Second
	wsDeadline   = 4*wsPingPeriod + time.Second
	// wsWriteTimeout bounds one write.
	wsWriteTimeout = time.Minute
	// maxStatusBytes bounds the error stream's message.
	maxStatusBytes = 64 << 10
)

// wsDialer opens exec WebSockets to one API server. It is built once per
// Executor, from the process's rest.Config, so every dial goes through the
// same wrappers as the clientset (authentication, user agent, and the
// process's counting transport).
type wsDialer struct {
	cfg    *transport.Config
	dialer gwebsocket.Dialer
	// copyBuffers lends 32 KiB buffers to the read loops' copies, and
	// dialer.WriteBufferPool to writes, so that an idle stream holds
	// neither.
	copyBuffers *sync.Pool
}

func newWSDialer(cfg *rest.Config) (*wsDialer, error) {
	tcfg, tlsCfg, proxy, err := dialTransport(cfg)
	if err != nil {
		return nil, fmt.Errorf("websocket %w", err)
	}
	return &wsDialer{cfg: tcfg, dialer: gwebsocket.Dialer{
		Proxy:            proxy,
		TLSClientConfig:  tlsCfg,
		Subprotocols:     []string{remotecommand.StreamProtocolV5Name},
		ReadBufferSize:   wsReadBuffer,
		WriteBufferSize:  wsWriteBuffer,
		WriteBufferPool:  &sync.Pool{},
		HandshakeTimeout: 30 * time.Second,
	}, copyBuffers: &sync.Pool{New: func() any { b := make([]byte, wsWriteBuffer); return &b }}}, nil
}

// dialTransport is what a dialer of podgate's own exec clients takes from
// the shared config: the transport config (whose wrappers add
// authentication and the counting transport), its TLS config, and the
// proxy (the environment's, less the no-proxy CIDRs, when none is set).
func dialTransport(cfg *rest.Config) (*transport.Config, *tls.Config, func(*http.Request) (*url.URL, error), error) {
	tcfg, err := cfg.TransportConfig()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("transport config: %w", err)
	}
	tlsCfg, err := transport.TLSConfigFor(tcfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("TLS config: %w", err)
	}
	proxy := cfg.Proxy
	if proxy == nil {
		proxy = utilnet.NewProxierWithNoProxyCIDR(http.ProxyFromEnvironment)
	}
	return tcfg, tlsCfg, proxy, nil
}

// dial opens an exec WebSocket at u (an https pods/exec URL). A refused
// upgrade is an *httpstream.UpgradeFailureError, whose cause is the API
// server's Status when it sent one, as client-go reports it.
func (d *wsDialer) dial(ctx context.Context, u *url.URL) (*wsConn, error) {
	rt := &wsUpgrader{dialer: &d.dialer}
	wrapped, err := transport.HTTPWrappersForConfig(d.cfg, rt)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := wrapped.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	_ = resp.Body.Close()
	return newWSConn(rt.conn, d.copyBuffers), nil
}

// wsUpgrader is the innermost round tripper of one dial: it performs the
// WebSocket handshake with the headers the wrappers set, and keeps the
// connection.
type wsUpgrader struct {
	dialer *gwebsocket.Dialer
	conn   *gwebsocket.Conn
}

func (u *wsUpgrader) RoundTrip(req *http.Request) (*http.Response, error) {
	target := *req.URL
	switch target.Scheme {
	case "https":
		target.Scheme = "wss"
	case "http":
		target.Scheme = "ws"
	}
	conn, resp, err := u.dialer.DialContext(req.Context(), target.String(), req.Header)
	if err != nil {
		return nil, upgradeError(err, resp)
	}
	if conn.Subprotocol() != remotecommand.StreamProtocolV5Name {
		_ = conn.Close()
		return nil, &httpstream.UpgradeFailureError{Cause: fmt.Errorf("unexpected protocol %q", conn.Subprotocol())}
	}
	u.conn = conn
	return resp, nil
}

// upgradeError describes a failed handshake as client-go does, so that the
// fallback to SPDY (Executor.shouldFallback) decides the same way.
func upgradeError(err error, resp *http.Response) error {
	if !errors.Is(err, gwebsocket.ErrBadHandshake) || resp == nil {
		return err
	}
	defer resp.Body.Close()
	cause := fmt.Errorf("%w (%s)", err, resp.Status)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxStatusBytes))
	var st metav1.Status
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
		cause = &apierrors.StatusError{ErrStatus: st}
	} else if s := strings.TrimSpace(string(body)); s != "" {
		cause = fmt.Errorf("%w: %s", cause, s)
	}
	return &httpstream.UpgradeFailureError{Cause: cause}
}

// wsConn is one exec WebSocket. It implements execConn.
//
// Lock order: wmu before dmu.
type wsConn struct {
	conn    *gwebsocket.Conn
	buffers *sync.Pool  // see wsDialer.copyBuffers
	ping    *time.Timer // the heartbeat; runs only while it fires

	// wmu serialises writes, pings included, and protects stdinClosed.
	wmu sync.Mutex
	// stdinClosed is set once stdin's close signal is written; no frame
	// of podgate's own follows it (see "Nothing after stdin's close").
	stdinClosed bool

	// dmu protects quiet and orders the read deadline's updates, so
	// that a deadline armed by the read loop cannot outlive quiesce.
	dmu sync.Mutex
	// quiet is set when the heartbeat has stopped for good: the read
	// deadline is then cleared and never armed again.
	quiet bool
}

var _ execConn = (*wsConn)(nil)

func newWSConn(conn *gwebsocket.Conn, buffers *sync.Pool) *wsConn {
	c := &wsConn{conn: conn, buffers: buffers}
	c.armDeadline()
	conn.SetPongHandler(func(string) error {
		c.armDeadline()
		return nil
	})
	c.ping = time.AfterFunc(wsPingPeriod, c.heartbeat)
	return c
}

// armDeadline gives the server wsDeadline more to show it is alive, unless
// the heartbeat has stopped (quiet), when nothing would prompt it to.
func (c *wsConn) armDeadline() {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if !c.quiet {
		_ = c.conn.SetReadDeadline(time.Now().Add(wsDeadline))
	}
}

// quiesce stops the heartbeat for good and clears the read deadline.
func (c *wsConn) quiesce() {
	c.ping.Stop()
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.quiet = true
	_ = c.conn.SetReadDeadline(time.Time{})
}

// heartbeat pings the server and schedules the next ping; a connection
// that stops answering fails its read loop at the deadline. It pings under
// wmu, so that no ping follows stdin's close signal.
func (c *wsConn) heartbeat() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.stdinClosed {
		return
	}
	if err := c.conn.WriteControl(gwebsocket.PingMessage, nil, time.Now().Add(wsWriteTimeout)); err != nil {
		return
	}
	c.ping.Reset(wsPingPeriod)
}

// serve reads the connection until the exec ends; see execConn.
func (c *wsConn) serve(stdout, stderr io.Writer) error {
	defer c.abort()
	var (
		status error
		ended  bool
	)
	// Each message borrows a copy buffer and gives it back, so that a
	// stream waiting between messages holds none.
	copyWith := func(w io.Writer, r io.Reader) error {
		bufp := c.buffers.Get().(*[]byte)
		defer c.buffers.Put(bufp)
		_, err := io.CopyBuffer(w, r, *bufp)
		return err
	}
	var id [1]byte
	for {
		typ, r, err := c.conn.NextReader()
		if err != nil {
			var ce *gwebsocket.CloseError
			if ended || (errors.As(err, &ce) && ce.Code == gwebsocket.CloseNormalClosure) {
				break
			}
			return fmt.Errorf("reading exec stream: %w", err)
		}
		c.armDeadline()
		if typ != gwebsocket.BinaryMessage {
			continue
		}
		if _, err := io.ReadFull(r, id[:]); err != nil {
			continue
		}
		switch id[0] {
		case remotecommand.StreamStdOut:
			if err := copyWith(stdout, r); err != nil {
				return fmt.Errorf("copying stdout: %w", err)
			}
		case remotecommand.StreamStdErr:
			if stderr == nil {
				stderr = io.Discard
			}
			if err := copyWith(stderr, r); err != nil {
				return fmt.Errorf("copying stderr: %w", err)
			}
		case remotecommand.StreamErr:
			b, err := io.ReadAll(io.LimitReader(r, maxStatusBytes))
			if err != nil {
				return fmt.Errorf("reading the exec's status: %w", err)
			}
			status, ended = decodeExecStatus(b), true
		}
	}
	if !ended {
		return errors.New("exec stream closed without the command's exit status")
	}
	return status
}

// decodeExecStatus turns the error stream's Status into the exec's outcome:
// nil, a utilexec.CodeExitError, or the server's error.
func decodeExecStatus(b []byte) error {
	var st metav1.Status
	if err := json.Unmarshal(bytes.TrimSpace(b), &st); err != nil {
		return fmt.Errorf("exec status %q: %w", b, err)
	}
	switch {
	case st.Status == metav1.StatusSuccess:
		return nil
	case st.Reason == remotecommand.NonZeroExitCodeReason && st.Details != nil:
		for _, cause := range st.Details.Causes {
			if cause.Type != remotecommand.ExitCodeCauseType {
				continue
			}
			code, err := strconv.ParseUint(cause.Message, 10, 8)
			if err != nil {
				return fmt.Errorf("exec status: invalid exit code %q", cause.Message)
			}
			return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: int(code)}
		}
	}
	return &apierrors.StatusError{ErrStatus: st}
}

// write sends p on stream id, in messages of at most one frame each: the
// API server reads every frame as a message of its own, stream byte first
// (a continuation frame would be taken for a message on whatever stream
// its first byte names).
func (c *wsConn) write(id byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.stdinClosed {
		return errStdinClosed
	}
	for first := true; first || len(p) > 0; first = false {
		n := min(len(p), wsWriteBuffer-1)
		if err := c.writeFrameLocked(id, p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// writeFrameLocked sends one single-frame message: id, then p, which fits
// the write buffer with it.
func (c *wsConn) writeFrameLocked(id byte, p []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
	w, err := c.conn.NextWriter(gwebsocket.BinaryMessage)
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte{id}); err != nil {
		_ = w.Close()
		return err
	}
	if _, err := w.Write(p); err != nil {
		_ = w.Close()
		return err
	}
	return w.Close()
}

func (c *wsConn) writeStdin(p []byte) error { return c.write(remotecommand.StreamStdIn, p) }

// closeStdin sends stdin's close signal, the last frame podgate writes on
// the connection (see "Nothing after stdin's close").
func (c *wsConn) closeStdin() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.stdinClosed {
		return nil
	}
	c.stdinClosed = true
	c.quiesce()
	return c.writeFrameLocked(remotecommand.StreamClose, []byte{remotecommand.StreamStdIn})
}

// errStdinClosed is what writes after closeStdin fail with.
var errStdinClosed = errors.New("exec stream's stdin is closed")

func (c *wsConn) resize(size scheduler.WindowSize) error {
	b, err := json.Marshal(struct{ Width, Height uint16 }{size.Cols, size.Rows})
	if err != nil {
		return err
	}
	return c.write(remotecommand.StreamResize, b)
}

// abort closes the connection; serve returns.
func (c *wsConn) abort() {
	c.ping.Stop()
	_ = c.conn.Close()
}
