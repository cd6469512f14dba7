package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

// certKit makes CAs and certificates with the real ssh-keygen, as an
// instructor would.
type certKit struct {
	t   *testing.T
	dir string
	n   int
}

// ca makes a CA key pair and returns its private key's path.
func (k *certKit) ca(name string) string {
	k.t.Helper()
	path := filepath.Join(k.dir, name)
	if err := podgatetest.Keygen(path); err != nil {
		k.t.Fatal(err)
	}
	return path
}

// issue makes a fresh user key and signs it with ca and the ssh-keygen
// options given; it returns the key's path, beside which ssh finds the
// certificate (key-cert.pub) by itself.
func (k *certKit) issue(ca string, opts ...string) string {
	k.t.Helper()
	k.n++
	key := filepath.Join(k.dir, fmt.Sprintf("user%d", k.n))
	if err := podgatetest.Keygen(key); err != nil {
		k.t.Fatal(err)
	}
	args := append([]string{"-q", "-s", ca, "-I", fmt.Sprintf("lab-cert-%d", k.n)}, opts...)
	if out, err := exec.Command("ssh-keygen", append(args, key+".pub")...).CombinedOutput(); err != nil {
		k.t.Fatalf("ssh-keygen -s %v: %v: %s", opts, err, out)
	}
	return key
}

// TestCertificates: user certificates made with ssh-keygen -s log in
// through the real ssh as their principal, within their validity, with
// their restrictions; expired, not yet valid, revoked, wrong-principal and
// wrong-source certificates are refused, each with its operator log line.
// A profile's own CA admits its certificates to that profile alone.
func TestCertificates(t *testing.T) {
	env := kubetest.New(t)
	kit := &certKit{t: t, dir: t.TempDir()}
	ca, labCA := kit.ca("ca"), kit.ca("lab-ca")
	revoked := filepath.Join(kit.dir, "revoked")
	os.WriteFile(revoked, []byte("# nothing revoked yet\n"), 0o600)
	// Every refusal below is a failed attempt from 127.0.0.1; throttling
	// would soon refuse the source address before any certificate is
	// looked at.
	s := startPodgate(t, env, "PODGATE_USER_CA_KEYS="+ca+".pub", "PODGATE_REVOKED_KEYS="+revoked,
		"PODGATE_AUTH_THROTTLE_FAILURES=0", "PODGATE_PORT_FORWARDING=true")
	login := func(key, user string, args ...string) (string, string, int) {
		t.Helper()
		a := append(s.sshArgs(key, "-p", s.port, user+"@127.0.0.1"), args...)
		return runCmd(t, exec.Command("ssh", a...), nil)
	}
	refused := func(what, key, user, logLine string) {
		t.Helper()
		if _, errOut, code := login(key, user, "true"); code != 255 || !strings.Contains(errOut, "Permission denied") {
			t.Errorf("%s: exit %d, %q; want Permission denied", what, code, errOut)
		}
		if !strings.Contains(s.Log.String(), logLine) {
			t.Errorf("%s: the operator log lacks %q", what, logLine)
		}
	}

	valid := kit.issue(ca, "-n", "alice", "-V", "-5m:+1h", "-z", "11")
	t.Run("valid certificate", func(t *testing.T) {
		out, errOut, code := login(valid, "alice", `echo "$(id -un) $PODGATE_USER"`)
		if code != 0 || strings.TrimSpace(out) != "user alice" {
			t.Fatalf("exit %d, %q, stderr %q", code, out, errOut)
		}
		if !strings.Contains(s.Log.String(), `msg="accepted certificate"`) {
			t.Error("no log line for the accepted certificate")
		}
	})
	t.Run("refusals", func(t *testing.T) {
		refused("wrong principal", valid, "bob", `msg="refused certificate: wrong principal" conn_id=`)
		refused("expired", kit.issue(ca, "-n", "alice", "-V", "20200101:20200102"), "alice", `msg="refused certificate: expired"`)
		refused("not yet valid", kit.issue(ca, "-n", "alice", "-V", "+1d:+2d"), "alice", `msg="refused certificate: not yet valid"`)
		refused("source address", kit.issue(ca, "-n", "alice", "-O", "source-address=10.0.0.0/8"), "alice", `msg="refused certificate: source address not allowed"`)
		refused("unknown CA", kit.issue(kit.ca("stranger"), "-n", "alice"), "alice", `msg="refused certificate: signed by a CA that is not trusted"`)
	})
	t.Run("revoked while valid", func(t *testing.T) {
		if err := os.WriteFile(revoked, []byte("serial: 11\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// The list is re-read within a second of a change.
		eventually(t, kubetest.Timeout, "the revoked certificate being refused", func() bool {
			_, _, code := login(valid, "alice", "true")
			return code == 255
		})
		if !strings.Contains(s.Log.String(), `msg="refused certificate: revoked" `) || !strings.Contains(s.Log.String(), `entry="serial 11"`) {
			t.Error("no log line naming the revocation entry")
		}
	})
	t.Run("revoked plain key", func(t *testing.T) {
		pub, err := os.ReadFile(s.key + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(revoked, append([]byte("serial: 11\nkey: "), pub...), 0o600); err != nil {
			t.Fatal(err)
		}
		eventually(t, kubetest.Timeout, "alice's revoked authorized key being refused", func() bool {
			_, _, code := login(s.key, "alice", "true")
			return code == 255
		})
		if !strings.Contains(s.Log.String(), `msg="refused key: revoked"`) {
			t.Error("no log line for the revoked key")
		}
	})
	t.Run("force-command and no-pty", func(t *testing.T) {
		key := kit.issue(ca, "-n", "alice", "-O", "force-command=echo forced: $SSH_ORIGINAL_COMMAND", "-O", "no-pty")
		out, _, code := login(key, "alice", "rm -rf ~")
		if code != 0 || strings.TrimSpace(out) != "forced: rm -rf ~" {
			t.Errorf("forced command: exit %d, %q", code, out)
		}
		if _, errOut, code := login(key, "alice", "-tt", "true"); code != 255 || !strings.Contains(errOut, "PTY allocation request failed") {
			t.Errorf("no-pty with ssh -tt: exit %d, %q", code, errOut)
		}
	})
	t.Run("no-port-forwarding", func(t *testing.T) {
		// The profile allows forwarding; the certificate does not.
		key := kit.issue(ca, "-n", "alice", "-O", "no-port-forwarding")
		a := append([]string{"-o", "LogLevel=INFO"}, s.sshArgs(key, "-p", s.port, "-W", "localhost:22", "alice@127.0.0.1")...)
		_, errOut, code := runCmd(t, exec.Command("ssh", a...), nil)
		if code != 255 || !strings.Contains(errOut, "administratively prohibited: podgate: your certificate does not permit port forwarding") {
			t.Errorf("ssh -W with a no-port-forwarding certificate: exit %d, %q", code, errOut)
		}
	})
	t.Run("a profile's own CA", func(t *testing.T) {
		pub, err := os.ReadFile(labCA + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		student := kit.issue(labCA, "-n", "alice", "-V", "-5m:+2h")
		createProfile(t, s, "lab", map[string]string{"podgate.io/user-ca-keys": string(pub), "podgate.io/pool-min": "1"}, debianSpec("lab"),
			shellSucceeds(t, fmt.Sprintf("ssh %s -p %s alice@127.0.0.1 true", strings.Join(s.sshArgs(student), " "), s.port)))
		// The lab CA's certificate lands in the lab without +lab...
		if out, _, code := login(student, "alice", `echo "$PROFILE_MARK"`); code != 0 || strings.TrimSpace(out) != "lab" {
			t.Errorf("lab certificate: exit %d, %q; want the lab profile", code, out)
		}
		// ...and nowhere else, while the global CA's still lands in the
		// default profile.
		refused("lab CA for the default profile", student, "alice+default", `msg="refused certificate: signed by the CA of profile lab, not of the profile the login names"`)
	})
}
