package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podgate/podgate/kube/kubetest"
)

// podgateBin is the podgate binary the e2e tests run, built once by
// TestMain when a cluster is configured.
var podgateBin string

func TestMain(m *testing.M) {
	if kubetest.Kubeconfig() != "" {
		dir, err := os.MkdirTemp("", "podgate-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		podgateBin = filepath.Join(dir, "podgate")
		if out, err := exec.Command("go", "build", "-o", podgateBin, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building podgate: %v\n%s", err, out)
			os.Exit(1)
		}
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// server is a podgate process serving one test's namespace, and an OpenSSH
// client set up to reach it as user alice.
type server struct {
	env     *kubetest.Env
	dir     string
	port    string
	metrics string
	key     string // alice's private key
	stderr  *bytes.Buffer
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process has been waited for
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

func keygen(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
}

// startPodgate runs the real binary against the test cluster with keys auth
// (alice has a key; mallory's key is unknown) and extra environment.
func startPodgate(t *testing.T, env *kubetest.Env, extra ...string) *server {
	t.Helper()
	s := &server{env: env, dir: t.TempDir(), port: freePort(t), metrics: freePort(t), stderr: &bytes.Buffer{}}
	keys := filepath.Join(s.dir, "keys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	s.key = filepath.Join(s.dir, "alice")
	keygen(t, s.key)
	keygen(t, filepath.Join(s.dir, "mallory"))
	pub, err := os.ReadFile(s.key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keys, "alice"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(podgateBin)
	s.cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"KUBECONFIG=" + kubetest.Kubeconfig(),
		"PODGATE_NAMESPACE=" + env.Namespace,
		"PODGATE_LISTEN=127.0.0.1:" + s.port,
		"PODGATE_METRICS_ADDR=127.0.0.1:" + s.metrics,
		"PODGATE_AUTH_MODE=keys",
		"PODGATE_AUTHORIZED_KEYS=" + keys,
		"PODGATE_REPLICA_ID=e2e",
		"PODGATE_HOST_KEY_PATH=" + filepath.Join(s.dir, "hostkey"),
		"PODGATE_AUDIT_LOG=" + filepath.Join(s.dir, "audit.log"),
		"PODGATE_IMAGE=" + kubetest.DebianImage,
		"PODGATE_POOL_MIN=2",
		"PODGATE_ENV_ALLOW=LANG,LC_*",
		"PODGATE_LEASE_DURATION=5s",
		"PODGATE_DRAIN_DEADLINE=10s",
	}, extra...)
	s.cmd.Stdout, s.cmd.Stderr = s.stderr, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	s.exited = exited
	go func() { _ = s.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("podgate log:\n%s", s.stderr.String())
		}
	})
	// Wait for /readyz: the process has no event to watch from here.
	ctx, cancel := context.WithTimeout(context.Background(), kubetest.Timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get("http://127.0.0.1:" + s.metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && s.idlePods() >= 1 {
				return s
			}
		}
		select {
		case <-exited:
			t.Fatalf("podgate exited:\n%s", s.stderr.String())
		case <-ctx.Done():
			t.Fatalf("podgate not ready:\n%s", s.stderr.String())
		case <-tick.C:
		}
	}
}

// sshArgs are the OpenSSH options every client in these tests uses.
func (s *server) sshArgs(key string, extra ...string) []string {
	return append([]string{"-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "LogLevel=ERROR"}, extra...)
}

// ssh returns an OpenSSH client command for user (alice's key).
func (s *server) ssh(user string, args ...string) *exec.Cmd {
	a := append(s.sshArgs(s.key, "-p", s.port, user+"@127.0.0.1"), args...)
	return exec.Command("ssh", a...)
}

// runCmd runs cmd and returns stdout, stderr and the exit status.
func runCmd(t *testing.T, cmd *exec.Cmd, stdin []byte) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return out.String(), strings.TrimSpace(errb.String()), code
}

// idlePods reads the default profile's idle pod count from /metrics, so
// tests start from a warm pool as users of a running podgate would.
func (s *server) idlePods() int {
	resp, err := http.Get("http://127.0.0.1:" + s.metrics + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "podgate_pool_pods{") && strings.Contains(line, `profile="default"`) && strings.Contains(line, `state="idle"`) {
			var n float64
			fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &n)
			return int(n)
		}
	}
	return 0
}

// eventually checks cond every 100 ms until it holds or timeout passes, and
// fails the test naming what never happened. The e2e tests wait on things
// that offer no event to watch (a process's HTTP port, a terminal screen, a
// socket file), so this bounded poll is the one way they wait.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
