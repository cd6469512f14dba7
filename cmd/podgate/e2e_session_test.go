package main

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podgate/podgate/internal/testenv/kubetest"
)

// TestE2ESessionModePodLimit: in session mode every session holds a pod of
// its own, so PODGATE_MAX_PODS_PER_USER must bound sessions, not
// connections. With a limit of 1, real OpenSSH clients show that a second
// session is refused whether it shares the first one's connection (an
// OpenSSH ControlMaster) or comes on a new connection, that the user is
// told their own limit was reached, and that the slot comes back when the
// first session ends.
func TestE2ESessionModePodLimit(t *testing.T) {
	env := kubetest.New(t)
	s := startPodgate(t, env, "PODGATE_MODE=session", "PODGATE_MAX_PODS_PER_USER=1", "PODGATE_MAX_CONNECTIONS_PER_USER=0")
	mux := filepath.Join(s.dir, "mux")

	master := exec.Command("ssh", append(s.sshArgs(s.key, "-p", s.port, "-o", "ControlMaster=yes", "-o", "ControlPath="+mux, "alice@127.0.0.1"), "echo held; exec sleep 300")...)
	out, err := master.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := master.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = master.Process.Kill(); _ = master.Wait() })
	first := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		first <- strings.TrimSpace(line)
	}()
	select {
	case line := <-first:
		if line != "held" {
			t.Fatalf("first session printed %q", line)
		}
	case <-time.After(kubetest.Timeout):
		t.Fatal("the first session did not start")
	}

	const limit = "podgate: you already have as many pods as one user may hold at once (1); close a session and try again"
	shared := exec.Command("ssh", append(s.sshArgs(s.key, "-p", s.port, "-o", "ControlMaster=no", "-o", "ControlPath="+mux, "alice@127.0.0.1"), "echo second")...)
	stdout, stderr, code := runCmd(t, shared, nil)
	if code == 0 || strings.Contains(stdout, "second") || !strings.Contains(stderr, limit) {
		t.Errorf("second session on the same connection: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stdout, stderr, code = runCmd(t, s.ssh("alice", "echo other"), nil)
	if code == 0 || strings.Contains(stdout, "other") || !strings.Contains(stderr, limit) {
		t.Errorf("a session on a second connection: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	_ = master.Process.Kill()
	_ = master.Wait()
	// The server notices the closed connection on its own; until then the
	// slot is still held, so retry for a bounded while.
	eventually(t, 30*time.Second, "a new session once the first one ended", func() bool {
		stdout, _, code := runCmd(t, s.ssh("alice", "echo again"), nil)
		return code == 0 && strings.TrimSpace(stdout) == "again"
	})
}
