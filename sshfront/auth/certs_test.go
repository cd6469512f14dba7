package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	clocktesting "k8s.io/utils/clock/testing"
)

// signer returns a fresh ed25519 key as a signer.
func signer(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// certOpts is what a test certificate differs in.
type certOpts struct {
	principals    []string
	after, before time.Time // zero: forever
	serial        uint64
	id            string
	critical      map[string]string
	extensions    map[string]string
	host          bool
}

// issue signs a user certificate for a fresh key with ca.
func issue(t *testing.T, ca ssh.Signer, o certOpts) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{
		Key: signer(t).PublicKey(), Serial: o.serial, CertType: ssh.UserCert, KeyId: o.id,
		ValidPrincipals: o.principals, ValidAfter: 0, ValidBefore: ssh.CertTimeInfinity,
		Permissions: ssh.Permissions{CriticalOptions: o.critical, Extensions: o.extensions},
	}
	if o.host {
		c.CertType = ssh.HostCert
	}
	if !o.after.IsZero() {
		c.ValidAfter = uint64(o.after.Unix())
	}
	if !o.before.IsZero() {
		c.ValidBefore = uint64(o.before.Unix())
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

// meta is the connection metadata the certificate callback sees.
type meta struct {
	ssh.ConnMetadata
	user   string
	remote net.Addr
}

func (m meta) User() string          { return m.user }
func (m meta) RemoteAddr() net.Addr  { return m.remote }
func (m meta) SessionID() []byte     { return []byte("s") }
func (m meta) ClientVersion() []byte { return []byte("SSH-2.0-test") }
func (m meta) ServerVersion() []byte { return []byte("SSH-2.0-podgate") }
func (m meta) LocalAddr() net.Addr   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222} }

type staticProfiles map[string][]ssh.PublicKey

func (p staticProfiles) ProfilesTrusting(ca ssh.PublicKey) []string {
	var names []string
	for name, keys := range p {
		for _, k := range keys {
			if sameKey(k, ca) {
				names = append(names, name)
			}
		}
	}
	return names
}

type certEnv struct {
	ca    *CertAuthority
	clock *clocktesting.FakePassiveClock
	logs  *bytes.Buffer
}

func newCertEnv(t *testing.T, cfg CertConfig) certEnv {
	t.Helper()
	var logs bytes.Buffer
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	cfg.Clock = clk
	ca, err := NewCertAuthority(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return certEnv{ca: ca, clock: clk, logs: &logs}
}

func (e certEnv) login(login string, cert *ssh.Certificate) (Decision, error) {
	user, profile, err := ParseLogin(login)
	if err != nil {
		return Decision{}, err
	}
	remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}
	req := Request{User: user, Profile: profile, RemoteAddr: remote.String(), ConnID: "c1"}
	return e.ca.Certificate(context.Background(), req, meta{user: login, remote: remote}, cert)
}

func TestCertificateAcceptedWithRestrictions(t *testing.T) {
	ca := signer(t)
	e := newCertEnv(t, CertConfig{CAKeys: []ssh.PublicKey{ca.PublicKey()}})
	now := e.clock.Now()
	cert := issue(t, ca, certOpts{principals: []string{"alice"}, serial: 9, id: "lab3-alice",
		after: now.Add(-time.Hour), before: now.Add(time.Hour),
		critical:   map[string]string{"force-command": "date", "source-address": "192.0.2.0/24"},
		extensions: map[string]string{"permit-pty": ""}})
	d, err := e.login("alice+lab", cert)
	if err != nil {
		t.Fatalf("login: %v\n%s", err, e.logs)
	}
	want := Decision{User: "alice", Profile: "lab", Cert: CertInfo{ID: "lab3-alice", Serial: 9, CA: ssh.FingerprintSHA256(ca.PublicKey())},
		Restrictions: Restrictions{ForceCommand: "date", SourceAddress: "192.0.2.0/24", NoPortForwarding: true}}
	if d != want {
		t.Errorf("decision = %+v\nwant       %+v", d, want)
	}
}

func TestCertificateRefusals(t *testing.T) {
	ca, other, labCA := signer(t), signer(t), signer(t)
	revoked := filepath.Join(t.TempDir(), "revoked")
	if err := os.WriteFile(revoked, []byte("# revoked\nserial: 100-199\nid: stolen laptop\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var rlog bytes.Buffer
	rev, err := NewRevocations(revoked, time.Now(), slog.New(slog.NewTextHandler(&rlog, nil)))
	if err != nil {
		t.Fatal(err)
	}
	e := newCertEnv(t, CertConfig{CAKeys: []ssh.PublicKey{ca.PublicKey()}, Revocations: rev,
		Profiles: staticProfiles{"lab": {labCA.PublicKey()}}})
	now := e.clock.Now()
	alice := []string{"alice"}
	for _, tc := range []struct {
		name, login string
		cert        *ssh.Certificate
		log         string // the operator log line's reason
	}{
		{"unknown CA", "alice", issue(t, other, certOpts{principals: alice}), "signed by a CA that is not trusted"},
		{"wrong principal", "bob", issue(t, ca, certOpts{principals: alice}), "wrong principal"},
		{"no principals", "alice", issue(t, ca, certOpts{}), "no principals"},
		{"expired", "alice", issue(t, ca, certOpts{principals: alice, before: now.Add(-CertSkew - time.Second)}), "expired"},
		{"not yet valid", "alice", issue(t, ca, certOpts{principals: alice, after: now.Add(CertSkew + 2*time.Second)}), "not yet valid"},
		{"revoked serial", "alice", issue(t, ca, certOpts{principals: alice, serial: 150}), `entry="serial 150"`},
		{"revoked id", "alice", issue(t, ca, certOpts{principals: alice, id: "stolen laptop"}), `entry="id \"stolen laptop\""`},
		{"source address", "alice", issue(t, ca, certOpts{principals: alice, critical: map[string]string{"source-address": "10.0.0.0/8"}}), "source address not allowed"},
		{"unknown critical option", "alice", issue(t, ca, certOpts{principals: alice, critical: map[string]string{"verify-required": ""}}), `unsupported critical option`},
		{"host certificate", "alice", issue(t, ca, certOpts{principals: alice, host: true}), "host certificate"},
		{"lab CA for another profile", "alice+web", issue(t, labCA, certOpts{principals: alice}), "signed by the CA of profile lab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.logs.Reset()
			d, err := e.login(tc.login, tc.cert)
			if !errors.Is(err, ErrDenied) {
				t.Fatalf("login = %+v, %v; want ErrDenied", d, err)
			}
			line := e.logs.String()
			if !strings.Contains(line, "refused certificate") || !strings.Contains(line, tc.log) || !strings.Contains(line, "conn_id=c1") {
				t.Errorf("log %q does not say %q", line, tc.log)
			}
		})
	}
}

func TestCertificateValidityWithinSkew(t *testing.T) {
	ca := signer(t)
	e := newCertEnv(t, CertConfig{CAKeys: []ssh.PublicKey{ca.PublicKey()}})
	now := e.clock.Now()
	for name, o := range map[string]certOpts{
		"signed on a clock ahead":    {after: now.Add(CertSkew - time.Second)},
		"just expired on our clock":  {after: now.Add(-time.Hour), before: now.Add(-CertSkew + 2*time.Second)},
		"a window of one second now": {after: now, before: now.Add(time.Second)},
	} {
		o.principals = []string{"alice"}
		if _, err := e.login("alice", issue(t, ca, o)); err != nil {
			t.Errorf("%s: %v\n%s", name, err, e.logs)
		}
	}
}

func TestCertificateProfileCA(t *testing.T) {
	labCA, sharedCA := signer(t), signer(t)
	e := newCertEnv(t, CertConfig{Profiles: staticProfiles{
		"lab": {labCA.PublicKey(), sharedCA.PublicKey()}, "lab2": {sharedCA.PublicKey()},
	}})
	alice := certOpts{principals: []string{"alice"}}
	// A profile's own CA assigns its profile, with or without +profile.
	for _, login := range []string{"alice", "alice+lab"} {
		d, err := e.login(login, issue(t, labCA, alice))
		if err != nil || d.Profile != "lab" || !d.Assigned {
			t.Errorf("%s: %+v, %v; want profile lab, assigned", login, d, err)
		}
	}
	// A CA two profiles trust needs the login to choose.
	if _, err := e.login("alice", issue(t, sharedCA, alice)); !errors.Is(err, ErrDenied) || !strings.Contains(e.logs.String(), "all trust") {
		t.Errorf("shared CA without +profile: %v\n%s", err, e.logs)
	}
	if d, err := e.login("alice+lab2", issue(t, sharedCA, alice)); err != nil || d.Profile != "lab2" || !d.Assigned {
		t.Errorf("shared CA with +lab2: %+v, %v", d, err)
	}
}

func TestRevocationsReloadAndFailClosed(t *testing.T) {
	ca := signer(t)
	path := filepath.Join(t.TempDir(), "revoked")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	start := time.Now()
	rev, err := NewRevocations(path, start, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	cert := issue(t, ca, certOpts{principals: []string{"alice"}, serial: 5})
	if entry, err := rev.Revoked(cert, start); entry != "" || err != nil {
		t.Fatalf("empty list: %q, %v", entry, err)
	}
	if err := os.WriteFile(path, []byte("key: "+string(ssh.MarshalAuthorizedKey(cert.Key))), 0o600); err != nil {
		t.Fatal(err)
	}
	// Within a second the old list stands; after it the new one counts.
	if entry, _ := rev.Revoked(cert, start.Add(500*time.Millisecond)); entry != "" {
		t.Errorf("re-read before recheckEvery: %q", entry)
	}
	if entry, _ := rev.Revoked(cert, start.Add(2*time.Second)); !strings.HasPrefix(entry, "key SHA256:") {
		t.Errorf("after the rewrite: entry %q, want the key", entry)
	}
	if err := os.WriteFile(path, []byte("serial: many\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := rev.Revoked(cert, start.Add(4*time.Second)); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("broken list: err = %v, want a refusal naming the line", err)
	}
	if !strings.Contains(logs.String(), "refusing every certificate") {
		t.Errorf("log does not say certificates are refused: %s", logs.String())
	}
}

func TestParseRevocations(t *testing.T) {
	ca := signer(t)
	key := signer(t).PublicKey()
	set, err := parseRevocations([]byte("serial: 1\nserial: 0x10-0x20\nid: a b\nhash: " + ssh.FingerprintSHA256(key) +
		"\nkey: " + string(ssh.MarshalAuthorizedKey(ca.PublicKey()))))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cert *ssh.Certificate
		want string
	}{
		{&ssh.Certificate{Serial: 1, Key: key, SignatureKey: signer(t).PublicKey()}, "serial 1"},
		{&ssh.Certificate{Serial: 0x18, Key: signer(t).PublicKey(), SignatureKey: signer(t).PublicKey()}, "serial 24"},
		{&ssh.Certificate{Serial: 2, KeyId: "a b", Key: signer(t).PublicKey(), SignatureKey: signer(t).PublicKey()}, `id "a b"`},
		{&ssh.Certificate{Serial: 2, Key: key, SignatureKey: signer(t).PublicKey()}, "key " + ssh.FingerprintSHA256(key)},
		{&ssh.Certificate{Serial: 2, Key: signer(t).PublicKey(), SignatureKey: ca.PublicKey()}, "CA key " + ssh.FingerprintSHA256(ca.PublicKey())},
		{&ssh.Certificate{Serial: 3, Key: signer(t).PublicKey(), SignatureKey: signer(t).PublicKey()}, ""},
	} {
		if got := set.match(tc.cert); got != tc.want {
			t.Errorf("match(serial %d, id %q) = %q, want %q", tc.cert.Serial, tc.cert.KeyId, got, tc.want)
		}
	}
	for _, bad := range []string{"serial: 5-1", "serial:", "krl: x", "hash: MD5:aa", "key: ssh-ed25519"} {
		if _, err := parseRevocations([]byte(bad)); err == nil {
			t.Errorf("parseRevocations(%q) accepted", bad)
		}
	}
}

func TestParseCAKeys(t *testing.T) {
	k := signer(t).PublicKey()
	line := string(ssh.MarshalAuthorizedKey(k))
	keys, err := ParseCAKeys([]byte("# CAs\n\n" + line + line))
	if err != nil || len(keys) != 1 {
		t.Fatalf("ParseCAKeys = %d keys, %v; want the one key once", len(keys), err)
	}
	cert := issue(t, signer(t), certOpts{principals: []string{"x"}})
	for _, bad := range []string{"", "garbage", line + "trailing words here", string(ssh.MarshalAuthorizedKey(cert))} {
		if _, err := ParseCAKeys([]byte(bad)); err == nil {
			t.Errorf("ParseCAKeys(%.30q) accepted", bad)
		}
	}
}

type acceptAll struct{}

func (acceptAll) PublicKey(_ context.Context, req Request, _ ssh.PublicKey) (Decision, error) {
	return Decision{User: req.User}, nil
}

func TestRevokedKeysFilter(t *testing.T) {
	revoked, kept := signer(t).PublicKey(), signer(t).PublicKey()
	path := filepath.Join(t.TempDir(), "revoked")
	os.WriteFile(path, []byte("key: "+string(ssh.MarshalAuthorizedKey(revoked))), 0o600)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	clk := clocktesting.NewFakePassiveClock(time.Now())
	rev, err := NewRevocations(path, clk.Now(), log)
	if err != nil {
		t.Fatal(err)
	}
	f := RevokedKeysFilter{Next: acceptAll{}, Revocations: rev, Clock: clk, Log: log}
	req := Request{User: "alice", ConnID: "c9"}
	if _, err := f.PublicKey(context.Background(), req, revoked); !errors.Is(err, ErrDenied) || !strings.Contains(logs.String(), "refused key: revoked") {
		t.Errorf("revoked key: %v\n%s", err, logs.String())
	}
	if d, err := f.PublicKey(context.Background(), req, kept); err != nil || d.User != "alice" {
		t.Errorf("other key: %+v, %v", d, err)
	}
}
