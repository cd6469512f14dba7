package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	spdystream "k8s.io/apimachinery/pkg/util/httpstream/spdy"
	pfconst "k8s.io/apimachinery/pkg/util/portforward"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/transport/websocket"

	"github.com/podgate/podgate/scheduler"
)

// maxForwardError bounds the error message read from a port-forward error
// stream.
const maxForwardError = 64 << 10

// DialTCP opens a stream to port inside the pod through pods/portforward,
// without any local listener. Each call makes its own connection to the API
// server carrying one error+data stream pair, so Close tears down exactly
// this stream and one slow forward cannot stall another.
//
// Transport: SPDY tunnelled through a WebSocket (the API server's
// PortForwardWebsockets feature, on by default since 1.31), falling back to
// plain SPDY when the server cannot upgrade to it. WebSocket first for the
// same reason as exec: it passes through proxies and load balancers that
// drop SPDY. Both dials are done here rather than through client-go's
// dialers so that ctx bounds the upgrade; ctx does not bound the returned
// connection.
//
// The kubelet connects to the port only once the streams exist, so a
// refused connection is not seen here: the first Read returns the error the
// kubelet sent on the error stream.
func (e *Executor) DialTCP(ctx context.Context, pod scheduler.PodRef, port uint16) (net.Conn, error) {
	u := e.pods.RESTClient().Post().
		Namespace(pod.Namespace).Resource("pods").Name(pod.Name).SubResource("portforward").URL()
	conn, err := e.dialPortForward(ctx, u)
	if err != nil {
		return nil, e.streamError(pod, fmt.Sprintf("dialing port %d", port), false, err)
	}
	c, err := newForwardConn(conn, pod, port)
	if err != nil {
		conn.Close()
		return nil, e.streamError(pod, fmt.Sprintf("dialing port %d", port), false, err)
	}
	return c, nil
}

// dialPortForward upgrades to a port-forward connection, WebSocket tunnel
// first unless disabled or known to fail.
func (e *Executor) dialPortForward(ctx context.Context, u *url.URL) (httpstream.Connection, error) {
	if !e.spdyOnly && !e.forwardWSRefused.Load() {
		conn, err := e.dialWebSocketTunnel(ctx, u)
		if err == nil || !e.shouldFallback(err, &e.forwardWSRefused, "portforward") {
			return conn, err
		}
	}
	return e.dialSPDY(ctx, u)
}

// dialWebSocketTunnel does what client-go's tunnelling dialer does, with a
// context on the upgrade request.
func (e *Executor) dialWebSocketTunnel(ctx context.Context, u *url.URL) (httpstream.Connection, error) {
	rt, holder, err := websocket.RoundTripperFor(e.cfg)
	if err != nil {
		return nil, fmt.Errorf("creating WebSocket transport: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("creating port-forward request: %w", err)
	}
	ws, err := websocket.Negotiate(rt, holder, req, pfconst.WebsocketsSPDYTunnelingPortForwardV1)
	if err != nil {
		return nil, err
	}
	conn, err := spdystream.NewClientConnectionWithPings(portforward.NewTunnelingConnection("client", ws), portforward.PingPeriod)
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("starting SPDY over WebSocket: %w", err)
	}
	return conn, nil
}

// dialSPDY upgrades to a plain SPDY port-forward connection.
func (e *Executor) dialSPDY(ctx context.Context, u *url.URL) (httpstream.Connection, error) {
	rt, upgrader, err := spdy.RoundTripperFor(e.cfg)
	if err != nil {
		return nil, fmt.Errorf("creating SPDY transport: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("creating port-forward request: %w", err)
	}
	conn, protocol, err := spdy.Negotiate(upgrader, &http.Client{Transport: rt}, req, portforward.PortForwardProtocolV1Name)
	if err != nil {
		return nil, err
	}
	if protocol != portforward.PortForwardProtocolV1Name {
		conn.Close()
		return nil, fmt.Errorf("negotiating port-forward protocol: server chose %q", protocol)
	}
	return conn, nil
}

// forwardConn is a net.Conn over one port-forward stream pair. Reads and
// writes go to the data stream; a goroutine reads the error stream, whose
// message (if any) replaces the EOF of the data stream, so a refused or
// broken forward surfaces as an error rather than a clean close.
type forwardConn struct {
	conn   httpstream.Connection
	data   httpstream.Stream
	errs   httpstream.Stream
	local  forwardAddr
	remote forwardAddr

	errDone   chan struct{} // closed when the error stream has been read to its end
	remoteErr error         // the error stream's message; valid after errDone

	closeOnce sync.Once
}

var _ net.Conn = (*forwardConn)(nil)

// newForwardConn creates the stream pair for port on conn.
func newForwardConn(conn httpstream.Connection, pod scheduler.PodRef, port uint16) (*forwardConn, error) {
	headers := http.Header{}
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	headers.Set(corev1.PortHeader, strconv.Itoa(int(port)))
	headers.Set(corev1.PortForwardRequestIDHeader, "0")
	errs, err := conn.CreateStream(headers)
	if err != nil {
		return nil, fmt.Errorf("creating error stream: %w", err)
	}
	// podgate never writes to the error stream.
	errs.Close()
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(headers)
	if err != nil {
		return nil, fmt.Errorf("creating data stream: %w", err)
	}
	c := &forwardConn{
		conn:    conn,
		data:    data,
		errs:    errs,
		local:   forwardAddr("podgate"),
		remote:  forwardAddr(fmt.Sprintf("%s/%s:%d", pod.Namespace, pod.Name, port)),
		errDone: make(chan struct{}),
	}
	go c.readErrors()
	return c, nil
}

// readErrors reads the error stream to its end.
func (c *forwardConn) readErrors() {
	defer close(c.errDone)
	msg, err := io.ReadAll(io.LimitReader(c.errs, maxForwardError))
	switch {
	case len(msg) > 0:
		c.remoteErr = fmt.Errorf("forwarding to %s: %s", c.remote, msg)
	case err != nil:
		c.remoteErr = fmt.Errorf("reading port-forward error stream for %s: %w", c.remote, err)
	}
}

// Read reads from the forwarded port. At the end of the data stream it
// returns the forward's error, if the kubelet reported one, instead of EOF.
func (c *forwardConn) Read(p []byte) (int, error) {
	n, err := c.data.Read(p)
	if errors.Is(err, io.EOF) {
		// The kubelet closes the error stream before the data stream,
		// so its message, if any, is already on the way.
		select {
		case <-c.errDone:
			if c.remoteErr != nil {
				return n, c.remoteErr
			}
		case <-c.conn.CloseChan():
		}
	}
	return n, err
}

// Write writes to the forwarded port.
func (c *forwardConn) Write(p []byte) (int, error) { return c.data.Write(p) }

// CloseWrite half-closes the stream: the pod's side sees EOF while replies
// can still be read, as for a TCP shutdown(SHUT_WR).
func (c *forwardConn) CloseWrite() error { return c.data.Close() }

// Close tears down both streams and the connection, and waits for the
// error-stream reader to end.
func (c *forwardConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.data.Reset()
		c.errs.Reset()
		err = c.conn.Close()
		<-c.errDone
	})
	return err
}

func (c *forwardConn) LocalAddr() net.Addr  { return c.local }
func (c *forwardConn) RemoteAddr() net.Addr { return c.remote }

// errNoDeadlines is returned by the deadline setters: port-forward streams
// have no deadlines; callers bound them by closing the connection.
var errNoDeadlines = fmt.Errorf("port-forward stream deadlines: %w", errors.ErrUnsupported)

func (c *forwardConn) SetDeadline(time.Time) error      { return errNoDeadlines }
func (c *forwardConn) SetReadDeadline(time.Time) error  { return errNoDeadlines }
func (c *forwardConn) SetWriteDeadline(time.Time) error { return errNoDeadlines }

// forwardAddr names an end of a forwarded stream.
type forwardAddr string

func (a forwardAddr) Network() string { return "portforward" }
func (a forwardAddr) String() string  { return string(a) }
