package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/podgate/podgate/internal/testenv/kubetest"
)

// authAttempts reads podgate_auth_attempts_total{method=publickey,result}.
func (s *server) authAttempts(t *testing.T, result string) int {
	t.Helper()
	m, err := s.Scrape(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(m.Value("podgate_auth_attempts_total", "method", "publickey", "result", result))
}

// sshKeys is an OpenSSH client offering exactly keys, in order, as user,
// with its debug log on stderr so the test can see what it offered. No
// agent is reachable, so nothing else is offered.
func (s *server) sshKeys(user string, keys []string, args ...string) *exec.Cmd {
	a := []string{"-F", "/dev/null", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=DEBUG1"}
	for _, k := range keys {
		a = append(a, "-i", k)
	}
	a = append(a, "-p", s.port, user+"@127.0.0.1")
	cmd := exec.Command("ssh", append(a, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dir}
	return cmd
}

// TestAuthLimits drives authentication with the real ssh client: a wrong
// key is refused, a client offering seven unknown keys is cut off after
// MaxAuthTries (6) of them, and once an address has failed
// PODGATE_AUTH_THROTTLE_FAILURES times even a right key is refused from
// it, with one operator log line rather than one per attempt.
func TestAuthLimits(t *testing.T) {
	const maxTries, throttleAfter = 6, 8
	env := kubetest.New(t)
	s := startPodgate(t, env, fmt.Sprint("PODGATE_MAX_AUTH_TRIES=", maxTries),
		fmt.Sprint("PODGATE_AUTH_THROTTLE_FAILURES=", throttleAfter), "PODGATE_AUTH_THROTTLE_WINDOW=5m")
	mallory := filepath.Join(s.dir, "mallory")
	failures := 0 // failed attempts from 127.0.0.1 since the last success

	t.Run("wrong key refused", func(t *testing.T) {
		before := s.authAttempts(t, "failure")
		_, errOut, code := runCmd(t, s.sshKeys("alice", []string{mallory}, "true"), nil)
		if code != 255 || !strings.Contains(errOut, "Permission denied") {
			t.Errorf("wrong key: exit %d; want 255 and Permission denied; stderr:\n%s", code, errOut)
		}
		if got := s.authAttempts(t, "failure") - before; got != 1 {
			t.Errorf("%d failed attempts counted for one wrong key, want 1", got)
		}
		failures++
	})
	t.Run("right key accepted and failures forgotten", func(t *testing.T) {
		out, errOut, code := runCmd(t, s.ssh("alice", "echo in"), nil)
		if code != 0 || strings.TrimSpace(out) != "in" {
			t.Fatalf("alice's key: exit %d, %q, stderr %q", code, out, errOut)
		}
		failures = 0
	})
	t.Run("seventh attempt never happens", func(t *testing.T) {
		var keys []string
		for i := 1; i <= maxTries+1; i++ {
			k := filepath.Join(s.dir, "k"+strconv.Itoa(i))
			keygen(t, k)
			keys = append(keys, k)
		}
		before := s.authAttempts(t, "failure")
		_, errOut, code := runCmd(t, s.sshKeys("alice", keys, "true"), nil)
		processed := s.authAttempts(t, "failure") - before
		failures += processed
		offered := strings.Count(errOut, "Offering public key:")
		t.Logf("%d keys: podgate processed %d attempts, ssh offered %d keys, exit %d", len(keys), processed, offered, code)
		if code != 255 || !strings.Contains(strings.ToLower(errOut), "too many authentication failures") {
			t.Errorf("exit %d, want 255 and a disconnect for too many authentication failures; stderr:\n%s", code, errOut)
		}
		if processed != maxTries {
			t.Errorf("podgate processed %d failed attempts in one connection, want exactly MaxAuthTries=%d", processed, maxTries)
		}
		if offered > maxTries || strings.Contains(errOut, "Offering public key: "+keys[maxTries]) {
			t.Errorf("ssh offered %d keys, the last being %s; the seventh must never be tried", offered, keys[maxTries])
		}
	})
	t.Run("throttled address refuses even the right key", func(t *testing.T) {
		for failures < throttleAfter {
			if _, _, code := runCmd(t, s.sshKeys("alice", []string{mallory}, "true"), nil); code != 255 {
				t.Fatalf("wrong key accepted: exit %d", code)
			}
			failures++
		}
		throttledBefore := s.authAttempts(t, "throttled")
		for i := range 3 {
			_, errOut, code := runCmd(t, s.ssh("alice", "echo in"), nil)
			if code != 255 || !strings.Contains(errOut, "Permission denied") {
				t.Fatalf("alice's right key while throttled (try %d): exit %d, stderr %q; want 255 and Permission denied", i+1, code, errOut)
			}
		}
		if got := s.authAttempts(t, "throttled") - throttledBefore; got < 3 {
			t.Errorf("podgate_auth_attempts_total{result=throttled} rose by %d for 3 refused logins", got)
		}
		if n := strings.Count(s.stderr.String(), "throttling authentication attempts"); n != 1 {
			t.Errorf("operator log says throttling %d times, want once per window:\n%s", n, s.stderr.String())
		}
	})
}
