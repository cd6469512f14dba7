package sshfront

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"
	"k8s.io/utils/clock"

	"github.com/podgate/podgate/scheduler"
	"github.com/podgate/podgate/sshfront/auth"
	"github.com/podgate/podgate/sshfront/recording"
)

// sshVerbose runs the OpenSSH client at the default log level, at which
// it prints the server's banner (LogLevel=ERROR, as h.ssh uses, hides it).
func (h *harness) sshVerbose(login string, remote ...string) sshResult {
	h.t.Helper()
	args := []string{"-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=INFO", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-p", strconv.Itoa(h.port), "-l", login, "-i", h.keyFile, "127.0.0.1"}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", append(args, remote...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatal(err)
	}
	return sshResult{stdout: out.String(), stderr: errb.String(), code: code}
}

func TestOpenSSHBanner(t *testing.T) {
	h := newHarness(t, func(c *Config, _ *Authenticators, _ *fakeBackend) {
		c.Banner = "Authorized use only."
		c.ProfileBanner = func(p string) string {
			if p == "lab" {
				return "Lab 3: files are wiped at midnight.\n"
			}
			return ""
		}
	})
	r := h.sshVerbose("alice", "echo in")
	if r.code != 0 || r.stdout != "in\n" {
		t.Fatalf("login: %+v", r)
	}
	if !strings.Contains(r.stderr, "Authorized use only.") {
		t.Errorf("the server banner did not reach the client: stderr %q", r.stderr)
	}
	// The banner precedes authentication: a refused login sees it too.
	r = h.sshVerbose("mallory+lab", "true")
	if r.code != 255 || !strings.Contains(r.stderr, "Lab 3: files are wiped at midnight.") || strings.Contains(r.stderr, "Authorized use") {
		t.Errorf("login naming lab: %+v, want the lab's banner only", r)
	}
}

func TestDemoBannerSaysAnyPasswordWorks(t *testing.T) {
	h := newHarness(t, func(c *Config, a *Authenticators, _ *fakeBackend) {
		*a = Authenticators{}
		c.Demo = true
	})
	r := h.sshVerbose("newcomer", "echo in")
	if r.code != 0 || !strings.Contains(r.stderr, "any user name and ANY password") {
		t.Errorf("demo login: %+v, want the demo banner", r)
	}
}

func TestOpenSSHSessionEnvironment(t *testing.T) {
	h := newHarness(t, func(_ *Config, _ *Authenticators, b *fakeBackend) {
		b.settings.AllowEnv = func(string) bool { return true } // even so, reserved names stay podgate's
	})
	r := h.ssh("alice", "", []string{"-o", "SetEnv=PODGATE_USER=mallory USER=root SSH_CLIENT=spoofed"},
		`echo "$PODGATE_USER|$USER|$LOGNAME|$SSH_CLIENT|$SSH_CONNECTION|${SSH_TTY-unset}|${SSH_ORIGINAL_COMMAND-unset}"`)
	f := strings.Split(strings.TrimSpace(r.stdout), "|")
	if r.code != 0 || len(f) != 7 {
		t.Fatalf("got %+v", r)
	}
	client := strings.Fields(f[3])
	conn := strings.Fields(f[4])
	port := strconv.Itoa(h.port)
	if f[0] != "alice" || f[1] != "alice" || f[2] != "alice" {
		t.Errorf("PODGATE_USER, USER, LOGNAME = %q, %q, %q; want alice (the fake backend has no pod account)", f[0], f[1], f[2])
	}
	if len(client) != 3 || client[0] != "127.0.0.1" || client[2] != port {
		t.Errorf("SSH_CLIENT = %q, want \"127.0.0.1 <client port> %s\"", f[3], port)
	}
	if len(conn) != 4 || conn[0] != "127.0.0.1" || conn[1] != client[1] || conn[2] != "127.0.0.1" || conn[3] != port {
		t.Errorf("SSH_CONNECTION = %q, want \"127.0.0.1 %s 127.0.0.1 %s\"", f[4], client[1], port)
	}
	if f[5] != "unset" || f[6] != "unset" {
		t.Errorf("SSH_TTY %q and SSH_ORIGINAL_COMMAND %q must be unset here", f[5], f[6])
	}
}

func TestOpenSSHMessageOfTheDay(t *testing.T) {
	h := newHarness(t, func(_ *Config, _ *Authenticators, b *fakeBackend) {
		b.settings.MOTD = "Welcome {user} to {profile}.\nBe nice."
	})
	// An interactive shell with a terminal gets it, with CRLF line ends.
	r := h.ssh("alice", "exit 0\n", []string{"-tt"})
	if !strings.HasPrefix(r.stdout, "Welcome alice to default.\r\nBe nice.\r\n") {
		t.Errorf("shell with a terminal: stdout %q, want the MOTD first", r.stdout)
	}
	// Commands and shells without a terminal (scripts, scp) never do.
	for _, opts := range [][]string{{"-tt"}, {"-T"}} {
		args := []string{"echo out"}
		if opts[0] == "-T" {
			args = nil
		}
		r := h.ssh("alice", "echo out\n", opts, args...)
		if strings.Contains(r.stdout, "Welcome") {
			t.Errorf("%v %v: stdout %q contains the MOTD", opts, args, r.stdout)
		}
	}
}

// certFixture makes a CA and a certificate for alice's key with the real
// ssh-keygen, as an operator would.
func certFixture(t *testing.T, h *harness, opts ...string) (ca ssh.PublicKey, keyFile string) {
	t.Helper()
	caFile := filepath.Join(h.dir, "ca")
	if _, err := os.Stat(caFile); err != nil {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", caFile).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	keyFile = filepath.Join(h.dir, "user")
	os.Remove(keyFile)
	os.Remove(keyFile + ".pub")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	args := append([]string{"-q", "-s", caFile, "-I", "alice-test", "-n", "alice"}, opts...)
	if out, err := exec.Command("ssh-keygen", append(args, keyFile+".pub")...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -s: %v: %s", err, out)
	}
	pub, err := os.ReadFile(caFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	ca, _, _, _, err = ssh.ParseAuthorizedKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return ca, keyFile
}

func TestOpenSSHCertificateRestrictions(t *testing.T) {
	certs := &lateChecker{}
	h := newHarness(t, func(_ *Config, a *Authenticators, b *fakeBackend) {
		b.settings.PortForwarding = true
		a.Certificate = certs
	})
	ca, key := certFixture(t, h, "-V", "-5m:+1h", "-O", "clear", "-O", `force-command=echo "forced [$SSH_ORIGINAL_COMMAND]"`)
	certs.trust(t, h, ca)
	// ssh loads key-cert.pub beside the key by itself.
	r := h.run("ssh", "", nil, "-p", strconv.Itoa(h.port), "-i", key, "alice@127.0.0.1", "id")
	if r.code != 0 || r.stdout != "forced [id]\n" {
		t.Errorf("force-command: %+v", r)
	}
	// No permit-pty: the pty request is refused, which ssh -tt treats as
	// fatal; no permit-port-forwarding: -W is refused.
	r = h.run("ssh", "", nil, "-p", strconv.Itoa(h.port), "-i", key, "-tt", "alice@127.0.0.1", "id")
	if r.code != 255 || !strings.Contains(r.stderr, "PTY allocation request failed") || !strings.Contains(h.logs.String(), "the certificate lacks permit-pty") {
		t.Errorf("pty with a certificate that does not permit it: %+v", r)
	}
	r = h.run("ssh", "", nil, "-p", strconv.Itoa(h.port), "-i", key, "-W", "localhost:80", "alice@127.0.0.1")
	if r.code == 0 || !strings.Contains(h.logs.String(), "lacks permit-port-forwarding") {
		t.Errorf("forwarding with a certificate that does not permit it: %+v", r)
	}
	if !strings.Contains(h.audit.String(), `"cert_id":"alice-test"`) || !strings.Contains(h.audit.String(), `"original_command":"id"`) {
		t.Errorf("audit lines lack the certificate or the original command:\n%s", h.audit)
	}
}

func TestOpenSSHExpiredCertificateRefused(t *testing.T) {
	certs := &lateChecker{}
	h := newHarness(t, func(_ *Config, a *Authenticators, _ *fakeBackend) { a.Certificate = certs })
	ca, key := certFixture(t, h, "-V", "20200101:20200102")
	certs.trust(t, h, ca)
	r := h.run("ssh", "", nil, "-p", strconv.Itoa(h.port), "-i", key, "alice@127.0.0.1", "true")
	if r.code != 255 || !strings.Contains(h.logs.String(), "refused certificate: expired") {
		t.Errorf("expired certificate: %+v", r)
	}
}

// lateChecker is a certificate checker set up once the harness exists
// (the CA is made in its directory, and the checker logs to its log).
// The server reads it from its own goroutines, and the only order between
// the test setting it and the server reading it goes through the ssh
// client process, which the race detector cannot see: an atomic pointer
// makes it visible.
type lateChecker struct {
	inner atomic.Pointer[auth.CertAuthority]
}

func (l *lateChecker) Certificate(ctx context.Context, req auth.Request, meta ssh.ConnMetadata, cert *ssh.Certificate) (auth.Decision, error) {
	a := l.inner.Load()
	if a == nil {
		return auth.Decision{}, auth.ErrDenied
	}
	return a.Certificate(ctx, req, meta, cert)
}

func (l *lateChecker) trust(t *testing.T, h *harness, ca ssh.PublicKey) {
	t.Helper()
	a, err := auth.NewCertAuthority(auth.CertConfig{CAKeys: []ssh.PublicKey{ca}}, newLogger(h.logs))
	if err != nil {
		t.Fatal(err)
	}
	l.inner.Store(a)
}

func TestOpenSSHRecording(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, func(c *Config, _ *Authenticators, b *fakeBackend) {
		b.settings.Record = scheduler.RecordOutput
		rec, err := recording.NewDir(recording.Config{Path: dir, MaxBytes: 1 << 20}, clock.RealClock{}, newLogger(&syncBuffer{}), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		c.Recordings = rec
	})
	r := h.ssh("alice", "", []string{"-tt"}, "echo recorded-output")
	if r.code != 0 {
		t.Fatalf("recorded session: %+v", r)
	}
	// Without a terminal nothing is recorded.
	h.ssh("alice", "", nil, "echo plain")
	casts, _ := filepath.Glob(filepath.Join(dir, "*.cast"))
	if len(casts) != 1 {
		t.Fatalf("casts %v, want one for the terminal session", casts)
	}
	data, _ := os.ReadFile(casts[0])
	if !strings.Contains(string(data), "recorded-output") {
		t.Errorf("cast %s lacks the output:\n%s", casts[0], data)
	}
	var line map[string]any
	found := false
	sc := bufio.NewScanner(strings.NewReader(h.audit.String()))
	for sc.Scan() {
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["recording"] == casts[0] {
			found = true
		}
	}
	if !found {
		t.Errorf("no audit line names %s:\n%s", casts[0], h.audit)
	}
}

func TestOpenSSHRecordingUnavailableRefuses(t *testing.T) {
	h := newHarness(t, func(_ *Config, _ *Authenticators, b *fakeBackend) {
		b.settings.Record = scheduler.RecordInput
	})
	r := h.ssh("alice", "", []string{"-tt"}, "echo should-not-run")
	if r.code != 1 || strings.Contains(r.stdout, "should-not-run") || !strings.Contains(r.stdout, "must be recorded") {
		t.Errorf("unrecordable session: %+v", r)
	}
}
