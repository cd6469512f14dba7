package kube

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/scheduler"
)

// TestDialTCP proves DialTCP against busybox httpd in a pod, over the
// WebSocket tunnel and over plain SPDY.
func TestDialTCP(t *testing.T) {
	t.Parallel()
	env := kubetest.New(t)
	pods := startPods(t, env, podSpec{
		image:     kubetest.BusyboxImage,
		command:   []string{"sh", "-c", "mkdir -p /tmp/www && exec httpd -f -p 8080 -h /tmp/www"},
		readyPort: 8080,
	})
	pod := pods[0]
	ws := newTestExecutor(t, env)

	// A 1 MiB file of random bytes for httpd to serve. The shell keeps
	// stdout open while cat reads: containerd closes an exec's stdin as
	// soon as its stdout is closed (containerd issue 13934), which would
	// truncate a bare `cat > file`.
	blob := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{9}).Read(blob)
	ctx := testContext(t)
	var stored bytes.Buffer
	st, err := ws.Exec(ctx, pod, scheduler.Command{
		Argv:  []string{"sh", "-c", "cat > /tmp/www/blob; wc -c < /tmp/www/blob"},
		Stdin: bytes.NewReader(blob), Stdout: &stored,
	})
	if err != nil || st.Code != 0 || atoi(t, stored.String()) != len(blob) {
		t.Fatalf("uploading blob: %+v, %v, stored %q bytes", st, err, stored.String())
	}

	for name, e := range map[string]*Executor{"websocket": ws, "spdy": newTestExecutor(t, env, WithSPDYOnly())} {
		t.Run(name, func(t *testing.T) {
			t.Run("RoundTrip", func(t *testing.T) {
				body := httpGet(t, e, pod, "/blob", false)
				if sha256.Sum256(body) != sha256.Sum256(blob) {
					t.Errorf("body of %d bytes differs from the %d-byte blob", len(body), len(blob))
				}
			})
			t.Run("HalfClose", func(t *testing.T) {
				body := httpGet(t, e, pod, "/blob", true)
				if sha256.Sum256(body) != sha256.Sum256(blob) {
					t.Errorf("after CloseWrite: body of %d bytes differs from the %d-byte blob", len(body), len(blob))
				}
			})
			t.Run("Concurrent", func(t *testing.T) {
				bodies := make([][]byte, 4)
				errs := make([]error, len(bodies))
				var wg sync.WaitGroup
				for i := range bodies {
					wg.Go(func() { bodies[i], errs[i] = fetch(t, e, pod, "/blob", false) })
				}
				wg.Wait()
				for i := range bodies {
					if errs[i] != nil || !bytes.Equal(bodies[i], blob) {
						t.Errorf("connection %d: %d bytes, err %v", i, len(bodies[i]), errs[i])
					}
				}
			})
			t.Run("RefusedPortIsAnError", func(t *testing.T) {
				conn, err := e.DialTCP(testContext(t), pod, 9)
				if err != nil {
					t.Fatalf("DialTCP: %v", err)
				}
				defer conn.Close()
				_, err = io.ReadAll(conn)
				if err == nil {
					t.Error("reading from a refused port ended cleanly; want the kubelet's error")
				}
			})
		})
	}
	if ws.forwardWSRefused.Load() {
		t.Error("port forwarding fell back to SPDY; the cluster should tunnel it over WebSocket")
	}
	t.Run("PodGone", func(t *testing.T) {
		_, err := ws.DialTCP(testContext(t), scheduler.PodRef{Namespace: env.Namespace, Name: "no-such-pod"}, 8080)
		if !errors.Is(err, scheduler.ErrPodGone) {
			t.Errorf("DialTCP to a missing pod: %v, want ErrPodGone", err)
		}
	})
}

// httpGet fetches path from the pod's port 8080 and returns the body.
func httpGet(t *testing.T, e *Executor, pod scheduler.PodRef, path string, halfClose bool) []byte {
	t.Helper()
	body, err := fetch(t, e, pod, path, halfClose)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// fetch is httpGet without t.Fatal, for use off the test goroutine.
func fetch(t *testing.T, e *Executor, pod scheduler.PodRef, path string, halfClose bool) ([]byte, error) {
	conn, err := e.DialTCP(testContext(t), pod, 8080)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.0\r\n\r\n"); err != nil {
		return nil, err
	}
	if halfClose {
		if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			return nil, err
		}
	}
	resp, err := io.ReadAll(conn)
	if err != nil {
		return nil, err
	}
	_, body, ok := bytes.Cut(resp, []byte("\r\n\r\n"))
	if !ok || !bytes.HasPrefix(resp, []byte("HTTP/1.")) || !bytes.Contains(resp[:min(len(resp), 16)], []byte(" 200")) {
		return nil, errors.New("bad response: " + string(resp[:min(len(resp), 200)]))
	}
	return body, nil
}

var _ interface{ CloseWrite() error } = (*forwardConn)(nil)
var _ net.Conn = (*forwardConn)(nil)
