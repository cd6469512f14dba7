package kube

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/scheduler"
)

// TestRelayOnCluster relays from a Debian pod to BusyBox httpd in another
// pod, over both exec transports, and checks that nothing of the relay is
// left in the pod afterwards; and that an image without bash is refused.
func TestRelayOnCluster(t *testing.T) {
	t.Parallel()
	env := kubetest.New(t)
	pods := startPods(t, env,
		podSpec{
			image:     kubetest.BusyboxImage,
			command:   []string{"sh", "-c", "mkdir -p /tmp/www && exec httpd -f -p 8080 -h /tmp/www"},
			readyPort: 8080,
		},
		debianPod(), busyboxPod())
	server, client, noBash := pods[0], pods[1], pods[2]
	ctx := testContext(t)
	p, err := env.Client.CoreV1().Pods(env.Namespace).Get(ctx, server.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	serverIP := p.Status.PodIP
	ws := newTestExecutor(t, env)

	blob := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{7}).Read(blob)
	if st, err := ws.Exec(ctx, server, scheduler.Command{
		Argv: []string{"sh", "-c", "cat > /tmp/www/blob; wc -c < /tmp/www/blob"}, Stdin: bytes.NewReader(blob), Stdout: io.Discard,
	}); err != nil || st.Code != 0 {
		t.Fatalf("uploading blob: %+v, %v", st, err)
	}

	for name, e := range map[string]*Executor{"websocket": ws, "spdy": newTestExecutor(t, env, WithSPDYOnly())} {
		t.Run(name, func(t *testing.T) {
			conn, err := e.Relay(testContext(t), client, serverIP, 8080, allowAll)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, "GET /blob HTTP/1.0\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := io.ReadAll(conn)
			if err != nil {
				t.Fatalf("reading the response: %v after %d bytes", err, len(resp))
			}
			if _, body, ok := bytes.Cut(resp, []byte("\r\n\r\n")); !ok || sha256.Sum256(body) != sha256.Sum256(blob) {
				t.Errorf("relayed body of %d bytes differs from the blob", len(body))
			}
		})
	}

	t.Run("closed relay leaves nothing behind", func(t *testing.T) {
		ctx := testContext(t)
		// running reports whether the relay's processes are in the pod.
		running := func() (bool, string) {
			var ps bytes.Buffer
			if _, err := ws.Exec(ctx, client, scheduler.Command{Argv: []string{"ps", "-eo", "args"}, Stdout: &ps}); err != nil {
				t.Fatal(err)
			}
			return strings.Contains(ps.String(), "podgate-relay") || strings.Contains(ps.String(), "\ncat"), ps.String()
		}
		conn, err := ws.Relay(ctx, client, serverIP, 8080, allowAll)
		if err != nil {
			t.Fatal(err)
		}
		if up, ps := running(); !up {
			t.Fatalf("no relay processes seen while the relay is open:\n%s", ps)
		}
		// httpd waits for a request that never comes: only the hang-up
		// ends the relay.
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
		// The hang-up is asynchronous in the pod; look until the
		// relay's processes are gone, bounded by the test context.
		for {
			up, ps := running()
			if !up {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("relay still running after Close:\n%s", ps)
			}
		}
	})

	t.Run("names resolve in the pod", func(t *testing.T) {
		var seen []netip.Addr
		pick := func(addrs []netip.Addr) (netip.Addr, error) {
			seen = addrs
			return netip.MustParseAddr("127.0.0.1"), nil
		}
		// Nothing listens on the client pod's loopback port 9.
		_, err := ws.Relay(testContext(t), client, "localhost", 9, pick)
		if !errors.Is(err, scheduler.ErrConnectFailed) || scheduler.UserMessage(err) != "podgate: Connection refused" {
			t.Errorf("relay to a closed port: %v (%q)", err, scheduler.UserMessage(err))
		}
		if !slices.Contains(seen, netip.MustParseAddr("127.0.0.1")) {
			t.Errorf("the pod resolved localhost to %v", seen)
		}
	})

	t.Run("image without bash", func(t *testing.T) {
		_, err := ws.Relay(testContext(t), noBash, serverIP, 8080, allowAll)
		if !errors.Is(err, scheduler.ErrRelayUnavailable) {
			t.Errorf("relay from BusyBox: %v, want ErrRelayUnavailable", err)
		}
	})
}
