package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/crypto/ssh"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func authorized(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func TestParseLogin(t *testing.T) {
	good := map[string][2]string{
		"alice":     {"alice", ""},
		"Alice":     {"alice", ""},
		"alice+GPU": {"alice", "gpu"},
		"a.b_c-d":   {"a.b_c-d", ""},
		"0day+x.y":  {"0day", "x.y"},
	}
	for in, want := range good {
		u, p, err := ParseLogin(in)
		if err != nil || u != want[0] || p != want[1] {
			t.Errorf("ParseLogin(%q) = %q, %q, %v; want %q, %q", in, u, p, err, want[0], want[1])
		}
	}
	bad := []string{"", "+gpu", "alice+", "\u212Aate", "alic\u0435", ".hidden", "..", "../x", "a/b", "a b",
		"a\x00", "a\n", "-rf", strings.Repeat("a", MaxUserLen+1), "alice+gpu+x", "alice+-x"}
	for _, in := range bad {
		if _, _, err := ParseLogin(in); !errors.Is(err, ErrBadLogin) {
			t.Errorf("ParseLogin(%q) = %v, want ErrBadLogin", in, err)
		}
	}
}

func TestKeysDirReloads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		k1, k2 := newKey(t), newKey(t)
		write := func(content string) {
			if err := os.WriteFile(filepath.Join(dir, "alice"), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		write("# alice\n" + authorized(k1) + " laptop\n")
		keys, err := NewKeysDir(dir, discard())
		if err != nil {
			t.Fatal(err)
		}
		req := Request{User: "alice", Profile: "gpu"}
		ctx := context.Background()
		if d, err := keys.PublicKey(ctx, req, k1); err != nil || d.User != "alice" || d.Profile != "gpu" {
			t.Fatalf("k1: %+v %v", d, err)
		}
		if _, err := keys.PublicKey(ctx, req, k2); !errors.Is(err, ErrDenied) {
			t.Fatalf("k2 before the edit: %v", err)
		}
		write(authorized(k2) + " new laptop, longer comment\n")
		time.Sleep(2 * recheckEvery)
		if _, err := keys.PublicKey(ctx, req, k2); err != nil {
			t.Fatalf("k2 after the edit: %v", err)
		}
		if _, err := keys.PublicKey(ctx, req, k1); !errors.Is(err, ErrDenied) {
			t.Fatalf("k1 still accepted after removal: %v", err)
		}
		if _, err := keys.PublicKey(ctx, Request{User: "bob"}, k1); !errors.Is(err, ErrDenied) {
			t.Fatalf("unknown user: %v", err)
		}
	})
}

func TestKeysDirCannotEscape(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "keys")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	k := newKey(t)
	if err := os.WriteFile(filepath.Join(root, "secret"), []byte(authorized(k)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../secret", filepath.Join(dir, "alice")); err != nil {
		t.Fatal(err)
	}
	keys, err := NewKeysDir(dir, discard())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.PublicKey(context.Background(), Request{User: "alice"}, k); err == nil {
		t.Fatal("a symlink out of the keys directory was followed")
	}
}

func TestKeysFile(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	path := filepath.Join(t.TempDir(), "users")
	content := "alice " + authorized(k1) + " a\n" +
		"bob " + authorized(k2) + "\n" +
		"mallory from=\"10.0.0.1\" " + authorized(k2) + "\n" +
		"Bad+User " + authorized(k1) + "\n" +
		"carol garbage\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := NewKeysFile(path, discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for user, key := range map[string]ssh.PublicKey{"alice": k1, "bob": k2} {
		if _, err := keys.PublicKey(ctx, Request{User: user}, key); err != nil {
			t.Errorf("%s: %v", user, err)
		}
	}
	if _, err := keys.PublicKey(ctx, Request{User: "alice"}, k2); !errors.Is(err, ErrDenied) {
		t.Errorf("alice with bob's key: %v", err)
	}
	if _, err := keys.PublicKey(ctx, Request{User: "mallory"}, k2); !errors.Is(err, ErrDenied) {
		t.Errorf("a key with options was accepted: %v", err)
	}
	_, skipped := ParseUserKeys([]byte(content))
	if len(skipped) != 3 {
		t.Errorf("skipped %v, want 3 lines", skipped)
	}
	for _, s := range skipped {
		if strings.Contains(s, "AAAA") {
			t.Errorf("skip reason quotes key material: %q", s)
		}
	}
}

func TestWebhookRetriesAndProfile(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, `{"success":true,"authenticatedUsername":"alice","profile":"gpu"}`)
	}))
	defer srv.Close()
	hook, err := NewWebhook(WebhookConfig{URL: srv.URL, Backoff: time.Millisecond}, discard())
	if err != nil {
		t.Fatal(err)
	}
	d, err := hook.Password(context.Background(), Request{User: "alice", Profile: "cpu"}, []byte("pw"))
	if err != nil || d.User != "alice" || d.Profile != "gpu" || calls.Load() != 3 {
		t.Fatalf("Password = %+v, %v after %d calls", d, err, calls.Load())
	}
}

func TestWebhookGivesUp(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer srv.Close()
	hook, err := NewWebhook(WebhookConfig{URL: srv.URL, Backoff: time.Millisecond, Retries: 2}, discard())
	if err != nil {
		t.Fatal(err)
	}
	_, err = hook.PublicKey(context.Background(), Request{User: "alice"}, newKey(t))
	if err == nil || errors.Is(err, ErrDenied) || calls.Load() != 3 {
		t.Fatalf("err %v after %d calls; want a non-denial error after 1+2 attempts", err, calls.Load())
	}
}

func TestWebhookTLSWithCustomCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"success":true}`)
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pemCert(srv.Certificate().Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	without, _ := NewWebhook(WebhookConfig{URL: srv.URL, Retries: -1}, discard())
	if _, err := without.Password(context.Background(), Request{User: "a"}, nil); err == nil {
		t.Fatal("untrusted certificate accepted")
	}
	with, err := NewWebhook(WebhookConfig{URL: srv.URL, CAFile: ca}, discard())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := with.Password(context.Background(), Request{User: "a"}, nil); err != nil {
		t.Fatalf("custom CA: %v", err)
	}
}

func TestParseWebhookResponse(t *testing.T) {
	req := Request{User: "alice", Profile: "cpu"}
	cases := []struct {
		body    string
		want    Decision
		wantErr error
	}{
		{`{"success":true}`, Decision{User: "alice", Profile: "cpu"}, nil},
		{`{"success":true,"profile":"gpu"}`, Decision{User: "alice", Profile: "gpu", Assigned: true}, nil},
		{`{"success":false,"profile":"gpu"}`, Decision{}, ErrDenied},
		{`{"success":true,"authenticatedUsername":"../root"}`, Decision{}, errors.New("")},
		{`{"success":true,"profile":"GPU"}`, Decision{}, errors.New("")},
		{`not json`, Decision{}, errors.New("")},
	}
	for _, c := range cases {
		d, err := ParseWebhookResponse([]byte(c.body), req)
		switch {
		case c.wantErr == nil && (err != nil || d != c.want):
			t.Errorf("%s: %+v %v, want %+v", c.body, d, err, c.want)
		case c.wantErr == ErrDenied && !errors.Is(err, ErrDenied):
			t.Errorf("%s: %v, want ErrDenied", c.body, err)
		case c.wantErr != nil && c.wantErr != ErrDenied && (err == nil || errors.Is(err, ErrDenied)):
			t.Errorf("%s: %v, want a non-denial error", c.body, err)
		}
	}
}

func TestThrottle(t *testing.T) {
	var logs strings.Builder
	th := NewThrottle(ThrottleConfig{MaxFailures: 2, Window: time.Hour}, slog.New(slog.NewTextHandler(&logs, nil)))
	th.Failed("192.0.2.1")
	if !th.Allow("192.0.2.1") {
		t.Fatal("throttled after one failure")
	}
	th.Failed("192.0.2.1")
	for range 5 {
		if th.Allow("192.0.2.1") {
			t.Fatal("not throttled after two failures")
		}
	}
	if !th.Allow("192.0.2.2") {
		t.Fatal("another address throttled")
	}
	if n := strings.Count(logs.String(), "throttling"); n != 1 {
		t.Fatalf("logged %d times, want once per window", n)
	}
	th.Succeeded("192.0.2.1")
	if !th.Allow("192.0.2.1") {
		t.Fatal("still throttled after a success")
	}
	if off := NewThrottle(ThrottleConfig{}, discard()); !off.Allow("x") {
		t.Fatal("zero config throttles")
	}
}
