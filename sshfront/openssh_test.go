package sshfront

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/internal/testenv/hosttools"
	"github.com/podgate/podgate/scheduler"
	"github.com/podgate/podgate/sshfront/auth"
)

// These tests drive the real OpenSSH client binaries against the server,
// with a backend that runs commands on the local machine.

func TestOpenSSHExitCode(t *testing.T) {
	h := newHarness(t)
	r := h.ssh("alice", "", nil, "exit 42")
	if r.code != 42 {
		t.Fatalf("exit code = %d, want 42 (stderr %q)", r.code, r.stderr)
	}
	ids := h.backend.attached()
	if len(ids) != 1 || ids[0].User != "alice" || ids[0].Profile != "" || ids[0].KeyFingerprint != ssh.FingerprintSHA256(h.key.PublicKey()) || ids[0].AcceptedAt.IsZero() {
		t.Fatalf("identities = %+v", ids)
	}
}

func TestOpenSSHStdinEOF(t *testing.T) {
	h := newHarness(t)
	// cat only exits once it sees EOF on stdin, so this proves the
	// client's EOF reached the process.
	r := h.ssh("alice", "hello\nworld\n", nil, "cat; echo done")
	if r.code != 0 || r.stdout != "hello\nworld\ndone\n" {
		t.Fatalf("got %+v", r)
	}
}

func TestOpenSSHStderrSeparated(t *testing.T) {
	h := newHarness(t)
	r := h.ssh("alice", "", nil, "echo out; echo err >&2")
	if r.stdout != "out\n" || r.stderr != "err\n" {
		t.Fatalf("stdout %q stderr %q", r.stdout, r.stderr)
	}
}

func TestOpenSSHEnvAllowlist(t *testing.T) {
	h := newHarness(t)
	r := h.ssh("alice", "", []string{"-o", "SetEnv=ALLOWED=yes SECRET=no"}, `echo "[$ALLOWED][$SECRET]"`)
	if r.stdout != "[yes][]\n" {
		t.Fatalf("stdout %q, want only the allowed variable", r.stdout)
	}
	if !strings.Contains(h.logs.String(), `"names":["SECRET"]`) {
		t.Errorf("refused variable not logged by name")
	}
	if strings.Contains(h.logs.String(), `"no"`) {
		t.Errorf("refused variable's value leaked into the log")
	}
}

func TestOpenSSHUnknownSubsystem(t *testing.T) {
	h := newHarness(t)
	r := h.ssh("alice", "", []string{"-s"}, "nosuch")
	if r.code != 1 || !strings.Contains(r.stderr, "podgate: unknown subsystem") {
		t.Fatalf("got %+v", r)
	}
}

// TestOpenSSHSFTPAndSCP copies a file up with scp and back with sftp; the
// fake backend serves both with the host's sftp-server.
func TestOpenSSHSFTPAndSCP(t *testing.T) {
	hosttools.Require(t, "scp", "sftp", "sftp-server")
	h := newHarness(t)
	src := filepath.Join(h.dir, "src.txt")
	data := strings.Repeat("podgate sftp test line\n", 50000) // ~1 MiB: exercises flow control
	if err := os.WriteFile(src, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	up := filepath.Join(h.dir, "uploaded.txt")
	down := filepath.Join(h.dir, "downloaded.txt")
	r := h.run("scp", "", nil, "-P", fmt.Sprint(h.port), "-i", h.keyFile, src, fmt.Sprintf("alice@127.0.0.1:%s", up))
	if r.code != 0 {
		t.Fatalf("scp upload: %+v", r)
	}
	batch := fmt.Sprintf("get %s %s\n", up, down)
	r = h.run("sftp", batch, nil, "-P", fmt.Sprint(h.port), "-i", h.keyFile, "-b", "-", "alice@127.0.0.1")
	if r.code != 0 {
		t.Fatalf("sftp: %+v", r)
	}
	got, err := os.ReadFile(down)
	if err != nil || string(got) != data {
		t.Fatalf("round trip through scp and sftp changed the file (err %v, %d bytes)", err, len(got))
	}
}

func TestOpenSSHWrongKeyRefused(t *testing.T) {
	h := newHarness(t)
	_, other := newTestKey(t, h.dir, "mallory_key")
	r := h.run("ssh", "", nil, "-p", fmt.Sprint(h.port), "-i", other, "alice@127.0.0.1", "true")
	if r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
		t.Fatalf("got %+v", r)
	}
	if len(h.backend.attached()) != 0 {
		t.Fatalf("backend was asked to attach an unauthenticated client")
	}
}

// countingKeys records every key offered to it and accepts none.
type countingKeys struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (c *countingKeys) PublicKey(_ context.Context, _ auth.Request, key ssh.PublicKey) (auth.Decision, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[ssh.FingerprintSHA256(key)] = true
	return auth.Decision{}, auth.ErrDenied
}

func TestOpenSSHSeventhAttemptNeverHappens(t *testing.T) {
	counter := &countingKeys{seen: map[string]bool{}}
	h := newHarness(t, func(_ *Config, a *Authenticators, _ *fakeBackend) { a.PublicKey = counter })
	args := []string{"-p", fmt.Sprint(h.port)}
	var fps []string
	for i := range 7 {
		k, path := newTestKey(t, h.dir, fmt.Sprintf("k%d", i))
		fps = append(fps, ssh.FingerprintSHA256(k.PublicKey()))
		args = append(args, "-i", path)
	}
	r := h.run("ssh", "", nil, append(args, "alice@127.0.0.1", "true")...)
	if r.code != 255 {
		t.Fatalf("got %+v", r)
	}
	counter.mu.Lock()
	defer counter.mu.Unlock()
	if len(counter.seen) != 6 {
		t.Fatalf("server checked %d keys, want exactly 6", len(counter.seen))
	}
	if counter.seen[fps[6]] {
		t.Fatalf("the 7th key was checked")
	}
}

func TestOpenSSHThrottling(t *testing.T) {
	h := newHarness(t, func(c *Config, _ *Authenticators, _ *fakeBackend) {
		c.Throttle = auth.ThrottleConfig{MaxFailures: 2}
	})
	_, other := newTestKey(t, h.dir, "mallory_key")
	for range 3 {
		r := h.run("ssh", "", nil, "-p", fmt.Sprint(h.port), "-i", other, "alice@127.0.0.1", "true")
		if r.code != 255 {
			t.Fatalf("wrong key accepted: %+v", r)
		}
	}
	// Now even the right key gets the standard failure.
	r := h.ssh("alice", "", nil, "true")
	if r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
		t.Fatalf("throttled client got %+v", r)
	}
	if n := strings.Count(h.logs.String(), "throttling authentication attempts"); n != 1 {
		t.Fatalf("throttling logged %d times, want once per window", n)
	}
	if len(h.backend.attached()) != 0 {
		t.Fatalf("throttled client reached the backend")
	}
}

// webhookServer answers /password and /pubkey like a ContainerSSH auth
// server: alice with password "s3cret" or the key *aliceKey, always with
// profile "gpu". It records the request bodies.
func webhookServer(t *testing.T, aliceKey *ssh.PublicKey) (*httptest.Server, func() []map[string]any) {
	var (
		mu   sync.Mutex
		reqs []map[string]any
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		mu.Lock()
		reqs = append(reqs, body)
		key := *aliceKey
		mu.Unlock()
		ok := false
		switch r.URL.Path {
		case "/password":
			pw, _ := base64.StdEncoding.DecodeString(fmt.Sprint(body["passwordBase64"]))
			ok = body["username"] == "alice" && string(pw) == "s3cret"
		case "/pubkey":
			ok = body["username"] == "alice" && body["publicKey"] == strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"success": ok, "profile": "gpu"})
	}))
	t.Cleanup(srv.Close)
	return srv, func() []map[string]any {
		mu.Lock()
		defer mu.Unlock()
		return append([]map[string]any(nil), reqs...)
	}
}

func TestOpenSSHWebhook(t *testing.T) {
	var aliceKey ssh.PublicKey
	srv, requests := webhookServer(t, &aliceKey)
	hook, err := auth.NewWebhook(auth.WebhookConfig{URL: srv.URL}, newLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(_ *Config, a *Authenticators, _ *fakeBackend) {
		a.PublicKey, a.Password = hook, hook
	})
	aliceKey = h.key.PublicKey() // before any request, so no race
	askpass := filepath.Join(h.dir, "askpass")
	pwFile := filepath.Join(h.dir, "pw")
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\ncat "+pwFile+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	passwordSSH := func(login, pw string) sshResult {
		if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return h.run("ssh", "", []string{"SSH_ASKPASS=" + askpass, "SSH_ASKPASS_REQUIRE=force"},
			"-p", fmt.Sprint(h.port), "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
			"-o", "NumberOfPasswordPrompts=1", login+"@127.0.0.1", "echo ok")
	}

	if res := passwordSSH("alice", "s3cret"); res.code != 0 || res.stdout != "ok\n" {
		t.Fatalf("right password: %+v", res)
	}
	if res := passwordSSH("alice", "wrong"); res.code != 255 {
		t.Fatalf("wrong password: %+v", res)
	}
	if res := h.ssh("alice+cpu", "", nil, "echo ok"); res.code != 0 {
		t.Fatalf("webhook key: %+v", res)
	}
	_, other := newTestKey(t, h.dir, "mallory_key")
	if res := h.run("ssh", "", nil, "-p", fmt.Sprint(h.port), "-i", other, "alice@127.0.0.1", "true"); res.code != 255 {
		t.Fatalf("webhook accepted an unknown key: %+v", res)
	}

	ids := h.backend.attached()
	if len(ids) != 2 {
		t.Fatalf("attached %d times, want 2", len(ids))
	}
	for _, id := range ids {
		if id.User != "alice" || id.Profile != "gpu" {
			t.Errorf("identity %+v: the webhook's profile must win over +cpu", id)
		}
	}
	var sawPassword, sawProfile bool
	for _, b := range requests() {
		if b["remoteAddress"] == nil || b["connectionId"] == nil || b["username"] != "alice" {
			t.Errorf("webhook request lacks ContainerSSH fields: %v", b)
		}
		if _, ok := b["passwordBase64"]; ok {
			sawPassword = true
		}
		if b["profile"] == "cpu" {
			sawProfile = true
		}
	}
	if !sawPassword || !sawProfile {
		t.Errorf("webhook saw password=%v requested profile=%v", sawPassword, sawProfile)
	}
	if strings.Contains(h.logs.String(), "s3cret") || strings.Contains(h.audit.String(), "s3cret") {
		t.Errorf("password leaked into logs")
	}
}

func TestOpenSSHAttachFailureMessage(t *testing.T) {
	h := newHarness(t, func(_ *Config, _ *Authenticators, b *fakeBackend) {
		b.attachErr = fmt.Errorf("claiming pod in node-7: %w", scheduler.ErrAtCapacity)
	})
	r := h.ssh("alice", "", nil, "true")
	if r.code != 1 || strings.TrimSpace(r.stderr) != "podgate: all pods are busy, please try again in a minute" {
		t.Fatalf("got %+v", r)
	}
}

func TestOpenSSHPerUserLimitMessage(t *testing.T) {
	h := newHarness(t, func(c *Config, _ *Authenticators, _ *fakeBackend) { c.MaxConnectionsPerUser = 1 })
	first := h.mustDial("alice")
	sess, err := first.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if out, err := sess.Output("echo first"); err != nil || string(out) != "first\n" {
		t.Fatalf("first connection: %q %v", out, err)
	}
	r := h.ssh("alice", "", nil, "true")
	if r.code != 1 || !strings.Contains(r.stderr, "podgate: you have too many connections open") {
		t.Fatalf("second connection got %+v", r)
	}
	if got := len(h.backend.attached()); got != 1 {
		t.Fatalf("backend attached %d times, want only the first connection", got)
	}
}

func TestOpenSSHTTYAndLoginProfile(t *testing.T) {
	h := newHarness(t)
	r := h.ssh("Alice+GPU", "", []string{"-tt", "-o", "SetEnv=TERM=vt100"}, `echo "$TERM $COLUMNS"`)
	// The fake backend has no real terminal; the client has none either,
	// so it asks for a 0x0 window, which must be clamped to 1 column.
	if r.code != 0 || r.stdout != "vt100 1\n" {
		t.Fatalf("got %+v", r)
	}
	ids := h.backend.attached()
	if len(ids) != 1 || ids[0].User != "alice" || ids[0].Profile != "gpu" {
		t.Fatalf("identities %+v: want canonical user alice, profile gpu", ids)
	}
}
