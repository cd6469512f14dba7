package kube

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/moby/spdystream/spdy"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	apispdy "k8s.io/apimachinery/pkg/util/httpstream/spdy"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
)

// spdyHandshakeTimeout bounds a dial: the connection, the upgrade and the
// streams' replies.
const spdyHandshakeTimeout = 30 * time.Second

// errSPDYProtocol is a server's answer that breaks the exec protocol.
var errSPDYProtocol = errors.New("SPDY exec protocol error")

// spdyDialer opens SPDY exec connections (spdyexec.go) to one API server.
// Like wsDialer it is built once per Executor from the process's
// rest.Config, so that every dial goes through the clientset's wrappers
// (authentication, user agent, the process's counting transport).
// apimachinery's SPDY round tripper is used only for its Dial, which
// connects (through a proxy when one is configured), handshakes TLS and
// writes the request; it keeps no state there, so one serves every dial.
type spdyDialer struct {
	cfg *transport.Config
	rt  *apispdy.SpdyRoundTripper
	// buffers lends write buffers, so that an idle stream holds none.
	buffers *sync.Pool
	// synPlain and synTTY open a plain and a terminal exec's streams;
	// see synStreams.
	synPlain, synTTY []byte
}

func newSPDYDialer(cfg *rest.Config) (*spdyDialer, error) {
	tcfg, tlsCfg, proxy, err := dialTransport(cfg)
	if err != nil {
		return nil, fmt.Errorf("SPDY %w", err)
	}
	rt, err := apispdy.NewRoundTripperWithConfig(apispdy.RoundTripperConfig{TLS: tlsCfg, Proxier: proxy})
	if err != nil {
		return nil, fmt.Errorf("creating SPDY dialer: %w", err)
	}
	d := &spdyDialer{cfg: tcfg, rt: rt, buffers: &sync.Pool{New: func() any {
		b := make([]byte, spdyHeaderLen+spdyMaxData)
		return &b
	}}}
	if d.synPlain, err = synStreams(false); err != nil {
		return nil, fmt.Errorf("creating SPDY dialer: %w", err)
	}
	if d.synTTY, err = synStreams(true); err != nil {
		return nil, fmt.Errorf("creating SPDY dialer: %w", err)
	}
	return d, nil
}

// dial opens an exec connection at u (an https pods/exec URL) and its
// streams. ctx bounds only the opening. A refused upgrade returns the API
// server's Status, as client-go's SPDY executor does.
func (d *spdyDialer) dial(ctx context.Context, u *url.URL, tty bool) (*spdyExecConn, error) {
	ctx, cancel := context.WithTimeout(ctx, spdyHandshakeTimeout)
	defer cancel()
	up := &spdyUpgrader{rt: d.rt}
	wrapped, err := transport.HTTPWrappersForConfig(d.cfg, up)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(httpstream.HeaderProtocolVersion, remotecommand.StreamProtocolV4Name)
	resp, err := wrapped.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	_ = resp.Body.Close()
	c := &spdyExecConn{conn: up.conn, br: up.br, tty: tty, buffers: d.buffers}
	syn := d.synPlain
	if tty {
		syn = d.synTTY
	}
	if err := c.open(ctx, syn); err != nil {
		_ = c.conn.Close()
		return nil, fmt.Errorf("opening exec streams: %w", err)
	}
	return c, nil
}

// spdyUpgrader is the innermost round tripper of one dial: it sends the
// upgrade request with the headers the wrappers set, reads the answer, and
// keeps the connection and its reader.
type spdyUpgrader struct {
	rt   *apispdy.SpdyRoundTripper
	conn net.Conn
	br   *bufio.Reader
}

func (u *spdyUpgrader) RoundTrip(req *http.Request) (*http.Response, error) {
	req = utilnet.CloneRequest(req)
	req.Header.Set(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	req.Header.Set(httpstream.HeaderUpgrade, apispdy.HeaderSpdy31)
	conn, err := u.rt.Dial(req)
	if err != nil {
		return nil, err
	}
	// Reading the answer does not watch the request's context: its
	// deadline (which dial always sets, and open clears once the streams
	// are open) and its cancellation end the read instead.
	if dl, ok := req.Context().Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(req.Context(), func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	br := bufio.NewReaderSize(conn, spdyReadBuffer)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("reading the upgrade's answer: %w", err)
	}
	if err := checkUpgrade(resp); err != nil {
		_ = conn.Close()
		return nil, err
	}
	u.conn, u.br = conn, br
	return resp, nil
}

// checkUpgrade accepts a 101 to SPDY/3.1 speaking v4, and otherwise
// describes the answer: the API server's Status when it sent one.
func checkUpgrade(resp *http.Response) error {
	if resp.StatusCode == http.StatusSwitchingProtocols &&
		strings.EqualFold(resp.Header.Get(httpstream.HeaderUpgrade), apispdy.HeaderSpdy31) {
		if p := resp.Header.Get(httpstream.HeaderProtocolVersion); p != remotecommand.StreamProtocolV4Name {
			return fmt.Errorf("%w: server chose protocol %q, want %q", errSPDYProtocol, p, remotecommand.StreamProtocolV4Name)
		}
		return nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxStatusBytes))
	var st metav1.Status
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
		return fmt.Errorf("upgrading to SPDY: %w", &apierrors.StatusError{ErrStatus: st})
	}
	err := fmt.Errorf("unable to upgrade connection: %s", resp.Status)
	if s := strings.TrimSpace(string(body)); s != "" {
		err = fmt.Errorf("%w: %s", err, s)
	}
	return &httpstream.UpgradeFailureError{Cause: err}
}

// open creates the exec's streams (see "The streams" in spdyexec.go) with
// syn, the dialer's SYN_STREAM frames, and waits for the server's reply to
// each, reading the connection until then.
func (c *spdyExecConn) open(ctx context.Context, syn []byte) error {
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.conn.Write(syn); err != nil {
		return err
	}
	if err := c.awaitReplies(spdyStreams); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return err
	}
	if !stop() {
		return ctx.Err()
	}
	return c.conn.SetDeadline(time.Time{})
}

// spdyStreams is how many streams an exec opens, of either kind.
const spdyStreams = 4

// synStreams returns the SYN_STREAM frames that open an exec's streams,
// in order, as the first frames of a connection. Their header blocks are
// compressed by zlib, continuing one stream over the connection; since
// podgate sends no other header block, the frames are the same for every
// connection, so the dialer builds them once: no connection holds a
// compressor (spdystream's framer allocates hundreds of KiB for one).
func synStreams(tty bool) ([]byte, error) {
	types := []string{corev1.StreamTypeError, corev1.StreamTypeStdin, corev1.StreamTypeStdout, corev1.StreamTypeStderr}
	if tty {
		types[3] = corev1.StreamTypeResize
	}
	var buf bytes.Buffer
	framer, err := spdy.NewFramer(&buf, nil)
	if err != nil {
		return nil, err
	}
	for i, typ := range types {
		frame := &spdy.SynStreamFrame{
			StreamId: spdy.StreamId(2*i + 1),
			Headers:  http.Header{http.CanonicalHeaderKey(corev1.StreamType): {typ}},
		}
		if err := framer.WriteFrame(frame); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// awaitReplies reads frames until each of the n streams has its SYN_REPLY.
func (c *spdyExecConn) awaitReplies(n int) error {
	var replied uint32 // bit i: stream 2i+1
	for done := 0; done < n; {
		h, err := c.readHeader()
		if err != nil {
			return err
		}
		if !h.control {
			return fmt.Errorf("%w: data on stream %d before every stream was open", errSPDYProtocol, h.stream)
		}
		id, status, err := c.readControl(h)
		if err != nil {
			return err
		}
		switch h.typ {
		case uint16(spdy.TypeSynReply):
			if bit := uint32(1) << (id / 2); id%2 == 1 && int(id/2) < n && replied&bit == 0 {
				replied |= bit
				done++
			}
		case uint16(spdy.TypeRstStream):
			return fmt.Errorf("%w: server reset stream %d (status %d)", errSPDYProtocol, id, status)
		case uint16(spdy.TypeGoAway):
			return fmt.Errorf("%w: server went away before every stream was open", errSPDYProtocol)
		}
	}
	return nil
}
