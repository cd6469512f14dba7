package sshfront

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/internal/testenv/hosttools"
	"github.com/podgate/podgate/scheduler"
	"github.com/podgate/podgate/sshfront/auth"
)

// harness is a Server on a loopback port with a fake backend, an
// authorized-keys directory holding alice's key, and captured logs.
type harness struct {
	t       *testing.T
	srv     *Server
	port    int
	backend *fakeBackend
	logs    *syncBuffer
	audit   *syncBuffer
	reg     *prometheus.Registry
	dir     string
	key     ssh.Signer // alice's key
	keyFile string
}

type harnessOption func(*Config, *Authenticators, *fakeBackend)

func newTestKey(t testing.TB, dir, name string) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	h := &harness{t: t, logs: &syncBuffer{}, audit: &syncBuffer{}, reg: prometheus.NewRegistry(), dir: t.TempDir()}
	h.backend = &fakeBackend{settings: scheduler.Settings{
		Profile:  "default",
		Mode:     scheduler.ModeConnection,
		AllowEnv: func(name string) bool { return name == "ALLOWED" || name == "LANG" },
	}}
	keysDir := filepath.Join(h.dir, "keys")
	if err := os.Mkdir(keysDir, 0o700); err != nil {
		t.Fatal(err)
	}
	h.key, h.keyFile = newTestKey(t, h.dir, "alice_key")
	if err := os.WriteFile(filepath.Join(keysDir, "alice"), ssh.MarshalAuthorizedKey(h.key.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	log := newLogger(h.logs)
	keys, err := auth.NewKeysDir(keysDir, log)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, _ := newTestKey(t, h.dir, "host_key")
	cfg := Config{HostKeys: []ssh.Signer{hostKey}, KeepaliveInterval: -1}
	authn := Authenticators{PublicKey: keys}
	for _, o := range opts {
		o(&cfg, &authn, h.backend)
	}
	h.srv, err = New(cfg, h.backend, authn, log, newLogger(h.audit), h.reg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.port = ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		for _, err := range h.backend.missingToolErrors() {
			t.Errorf("the fake backend: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", h.logs.String())
		}
	})
	return h
}

// sshResult is what an OpenSSH client run produced.
type sshResult struct {
	stdout, stderr string
	code           int
}

// ssh runs the OpenSSH client as login with alice's key (plus any -i in
// opts), feeding stdin and running remote, if given, as the command.
func (h *harness) ssh(login, stdin string, opts []string, remote ...string) sshResult {
	h.t.Helper()
	args := append([]string{"-p", strconv.Itoa(h.port), "-l", login, "-i", h.keyFile}, opts...)
	args = append(append(args, "127.0.0.1"), remote...)
	return h.run("ssh", stdin, nil, args...)
}

// run runs an OpenSSH client (ssh, scp or sftp) with options that ignore
// the user's config and known hosts. A nil env means BatchMode (no prompts
// at all).
func (h *harness) run(bin, stdin string, env []string, args ...string) sshResult {
	h.t.Helper()
	path, err := hosttools.Path(bin)
	if err != nil {
		h.t.Fatal(err)
	}
	base := []string{
		"-F", "/dev/null",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
	}
	if env == nil {
		base = append(base, "-o", "BatchMode=yes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append(base, args...)...)
	cmd.Stdin = bytes.NewBufferString(stdin)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatalf("running %s: %v", bin, err)
	}
	return sshResult{stdout: out.String(), stderr: errb.String(), code: code}
}

// dial opens a Go SSH client connection as login with signer.
func (h *harness) dial(login string, signer ssh.Signer) (*ssh.Client, error) {
	return ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(h.port)), &ssh.ClientConfig{
		User:            login,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         deadline,
	})
}

func (h *harness) mustDial(login string) *ssh.Client {
	h.t.Helper()
	c, err := h.dial(login, h.key)
	if err != nil {
		h.t.Fatalf("dial: %v", err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}
