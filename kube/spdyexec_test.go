package kube

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/spdystream"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	apispdy "k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/rest"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/podgate/podgate/scheduler"
)

// fakeExec is the server side of one exec in the tests: moby/spdystream,
// as the kubelet runs it, with the streams the client opened by type.
type fakeExec struct {
	raw     net.Conn
	conn    *spdystream.Connection
	streams map[string]*spdystream.Stream
}

// status writes the exec's v4 status: exit code 0 is success.
func (x *fakeExec) status(t *testing.T, code int) {
	st := metav1.Status{Status: metav1.StatusSuccess}
	if code != 0 {
		st = metav1.Status{Status: metav1.StatusFailure, Reason: remotecommand.NonZeroExitCodeReason,
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: remotecommand.ExitCodeCauseType, Message: fmt.Sprint(code)}}}}
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Error(err)
		return
	}
	if _, err := x.streams[corev1.StreamTypeError].Write(b); err != nil {
		t.Errorf("writing status: %v", err)
	}
}

// end closes the connection as the kubelet does after the status.
func (x *fakeExec) end() {
	_ = x.conn.Close()
	_ = x.raw.Close()
}

// startSPDYServer serves one exec per connection with run, once the
// client has opened its streams (four, as both kinds of stream open).
func startSPDYServer(t *testing.T, run func(x *fakeExec)) *httptest.Server {
	t.Helper()
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get(httpstream.HeaderUpgrade) != apispdy.HeaderSpdy31 ||
			r.Header.Get(httpstream.HeaderProtocolVersion) != remotecommand.StreamProtocolV4Name {
			t.Errorf("upgrade request %s %v", r.Method, r.Header)
		}
		raw, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n%s: %s\r\n\r\n",
			httpstream.HeaderProtocolVersion, remotecommand.StreamProtocolV4Name)
		if err := rw.Flush(); err != nil {
			t.Error(err)
			return
		}
		conn, err := spdystream.NewConnection(raw, true)
		if err != nil {
			t.Error(err)
			return
		}
		streams := make(chan *spdystream.Stream, 4)
		wg.Go(func() {
			conn.Serve(func(s *spdystream.Stream) {
				_ = s.SendReply(http.Header{}, false)
				streams <- s
			})
		})
		x := &fakeExec{raw: raw, conn: conn, streams: map[string]*spdystream.Stream{}}
		for range 4 {
			s := <-streams
			x.streams[s.Headers().Get(corev1.StreamType)] = s
		}
		run(x)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		wg.Wait()
	})
	return srv
}

// dialTest opens an exec connection to srv.
func dialTest(t *testing.T, srv *httptest.Server, tty bool) (*spdyExecConn, error) {
	t.Helper()
	d, err := newSPDYDialer(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(srv.URL + "/api/v1/namespaces/ns/pods/p/exec")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return d.dial(ctx, u, tty)
}

// serveTest runs serve to its end.
func serveTest(t *testing.T, c *spdyExecConn) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = c.serve(&out, &errOut)
	return out.String(), errOut.String(), err
}

func TestSPDYExecExitStatus(t *testing.T) {
	for _, code := range []int{0, 3, 255} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			srv := startSPDYServer(t, func(x *fakeExec) {
				_, _ = x.streams[corev1.StreamTypeStdout].Write([]byte("out"))
				_, _ = x.streams[corev1.StreamTypeStderr].Write([]byte("err"))
				x.status(t, code)
				x.end()
			})
			c, err := dialTest(t, srv, false)
			if err != nil {
				t.Fatal(err)
			}
			stdout, stderr, err := serveTest(t, c)
			if stdout != "out" || stderr != "err" {
				t.Errorf("stdout %q, stderr %q; want them apart", stdout, stderr)
			}
			var exit utilexec.CodeExitError
			switch {
			case code == 0 && err != nil:
				t.Errorf("serve = %v, want nil", err)
			case code != 0 && (!errors.As(err, &exit) || exit.Code != code):
				t.Errorf("serve = %v, want exit code %d", err, code)
			}
		})
	}
}

// TestSPDYExecStdin checks stdin's bytes and half-close, and that nothing
// is written after it.
func TestSPDYExecStdin(t *testing.T) {
	srv := startSPDYServer(t, func(x *fakeExec) {
		in, err := io.ReadAll(x.streams[corev1.StreamTypeStdin])
		if err != nil {
			t.Errorf("reading stdin: %v", err)
		}
		_, _ = x.streams[corev1.StreamTypeStdout].Write(in)
		x.status(t, 0)
		x.end()
	})
	c, err := dialTest(t, srv, false)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("y"), 3*spdyMaxData+5)
	if err := c.writeStdin([]byte("hello ")); err != nil {
		t.Fatal(err)
	}
	if err := c.writeStdin(big); err != nil {
		t.Fatal(err)
	}
	if err := c.closeStdin(); err != nil {
		t.Fatal(err)
	}
	if err := c.writeStdin([]byte("late")); !errors.Is(err, errStdinClosed) {
		t.Errorf("write after closeStdin = %v, want errStdinClosed", err)
	}
	stdout, _, err := serveTest(t, c)
	if err != nil || stdout != "hello "+string(big) {
		t.Errorf("serve = %v, stdout %d bytes; want stdin echoed (%d bytes)", err, len(stdout), len(big)+6)
	}
	if err := c.writeStdin([]byte("after")); !errors.Is(err, errStdinClosed) && !errors.Is(err, errStreamEnded) {
		t.Errorf("write after the end = %v", err)
	}
}

// slowWriter takes its time over every write, as a user's slow network
// would, and hashes what it gets.
type slowWriter struct {
	n   int
	sum interface {
		io.Writer
		Sum([]byte) []byte
	}
}

func (w *slowWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	time.Sleep(20 * time.Microsecond) // a throttle, not a synchronisation
	return w.sum.Write(p)
}

// TestSPDYExecSlowReader sends more output than the sockets hold to a slow
// reader, then the status, and closes the connection at once, as the
// kubelet does: every byte must arrive, then the status.
func TestSPDYExecSlowReader(t *testing.T) {
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	srv := startSPDYServer(t, func(x *fakeExec) {
		out := x.streams[corev1.StreamTypeStdout]
		for p := data; len(p) > 0; p = p[min(len(p), 32<<10):] {
			if _, err := out.Write(p[:min(len(p), 32<<10)]); err != nil {
				t.Errorf("writing stdout: %v", err)
				return
			}
		}
		x.status(t, 7)
		x.end()
	})
	c, err := dialTest(t, srv, false)
	if err != nil {
		t.Fatal(err)
	}
	w := &slowWriter{sum: sha256.New()}
	err = c.serve(w, io.Discard)
	var exit utilexec.CodeExitError
	if !errors.As(err, &exit) || exit.Code != 7 {
		t.Errorf("serve = %v, want exit code 7", err)
	}
	if want := sha256.Sum256(data); w.n != len(data) || !bytes.Equal(w.sum.Sum(nil), want[:]) {
		t.Errorf("got %d bytes of %d, or different ones", w.n, len(data))
	}
}

// TestSPDYExecServerClosesEarly checks that a connection closed without a
// status is a failure, not a success with output missing.
func TestSPDYExecServerClosesEarly(t *testing.T) {
	srv := startSPDYServer(t, func(x *fakeExec) {
		_, _ = x.streams[corev1.StreamTypeStdout].Write([]byte("partial"))
		x.end()
	})
	c, err := dialTest(t, srv, false)
	if err != nil {
		t.Fatal(err)
	}
	stdout, _, err := serveTest(t, c)
	if err == nil || stdout != "partial" {
		t.Errorf("serve = %v, stdout %q; want a failure after the partial output", err, stdout)
	}
}

// TestSPDYExecAbort aborts a stream whose command runs on, and checks that
// serve returns and that no goroutine of the client is left.
func TestSPDYExecAbort(t *testing.T) {
	release := make(chan struct{})
	srv := startSPDYServer(t, func(x *fakeExec) {
		_, _ = x.streams[corev1.StreamTypeStdout].Write([]byte("running"))
		<-release
		x.end()
	})
	before := runtime.NumGoroutine()
	c, err := dialTest(t, srv, false)
	if err != nil {
		t.Fatal(err)
	}
	first := &firstByte{seen: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- c.serve(first, io.Discard) }()
	<-first.seen
	c.abort()
	select {
	case err := <-served:
		if !errors.Is(err, errExecAborted) {
			t.Errorf("serve = %v, want errExecAborted", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after abort")
	}
	if err := c.writeStdin([]byte("x")); err == nil {
		t.Error("write after abort succeeded")
	}
	// The server's command ends too; then every goroutine, the client's
	// and the server's, must be gone.
	close(release)
	waitGoroutines(t, before)
}

// waitGoroutines waits for the goroutine count to fall back to limit.
func waitGoroutines(t *testing.T, limit int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > limit {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), limit, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSPDYExecRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status: metav1.StatusFailure, Reason: metav1.StatusReasonForbidden, Code: http.StatusForbidden,
			Message: `pods "p" is forbidden: no exec for you`})
	}))
	defer srv.Close()
	_, err := dialTest(t, srv, false)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "no exec for you") {
		t.Errorf("dial = %v, want the server's Forbidden status", err)
	}
}

// TestSPDYExecTerminal checks a terminal's streams: resize instead of
// stderr, and the size as client-go encodes it.
func TestSPDYExecTerminal(t *testing.T) {
	srv := startSPDYServer(t, func(x *fakeExec) {
		var size struct{ Width, Height uint16 }
		if _, ok := x.streams[corev1.StreamTypeResize]; !ok {
			t.Error("no resize stream")
			x.end()
			return
		}
		if err := json.NewDecoder(x.streams[corev1.StreamTypeResize]).Decode(&size); err != nil {
			t.Errorf("reading resize: %v", err)
		}
		fmt.Fprintf(x.streams[corev1.StreamTypeStdout], "%dx%d", size.Width, size.Height)
		x.status(t, 0)
		x.end()
	})
	c, err := dialTest(t, srv, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.resize(scheduler.WindowSize{Cols: 80, Rows: 24}); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := serveTest(t, c)
	if err != nil || stdout != "80x24" {
		t.Errorf("serve = %v, stdout %q; want 80x24", err, stdout)
	}
}
