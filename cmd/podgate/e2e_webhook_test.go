package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgate/podgate/internal/testenv/kubetest"
)

// authHook is a small ContainerSSH-compatible auth server: POST /pubkey
// and /password with {username, remoteAddress, connectionId, publicKey or
// passwordBase64}, answered by {success, profile}.
type authHook struct {
	password string // the one accepted password
	profiles map[string]string

	// mu protects key and reqs: the key is set once podgate has made the
	// user's key, while podgate may already be calling the hook.
	mu   sync.Mutex
	key  string // the one accepted public key, "type base64"
	reqs []hookRequest
}

type hookRequest struct {
	Path           string `json:"-"`
	Username       string `json:"username"`
	RemoteAddress  string `json:"remoteAddress"`
	ConnectionID   string `json:"connectionId"`
	PublicKey      string `json:"publicKey"`
	PasswordBase64 string `json:"passwordBase64"`
}

func (h *authHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req hookRequest
	if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&req) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	req.Path = r.URL.Path
	h.mu.Lock()
	h.reqs = append(h.reqs, req)
	key := h.key
	h.mu.Unlock()
	ok := false
	switch r.URL.Path {
	case "/pubkey":
		ok = keyBody(req.PublicKey) == key
	case "/password":
		pw, err := base64.StdEncoding.DecodeString(req.PasswordBase64)
		ok = err == nil && string(pw) == h.password
	default:
		http.NotFound(w, r)
		return
	}
	resp := map[string]any{"success": ok}
	if ok && h.profiles[req.Username] != "" {
		resp["profile"] = h.profiles[req.Username]
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// last returns the most recent request to path.
func (h *authHook) last(path string) (hookRequest, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(h.reqs) - 1; i >= 0; i-- {
		if h.reqs[i].Path == path {
			return h.reqs[i], true
		}
	}
	return hookRequest{}, false
}

// keyBody is an authorized_keys line without its comment.
func keyBody(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return ""
	}
	return f[0] + " " + f[1]
}

// sshPassword is an OpenSSH client that logs in with a password only,
// which it reads from an SSH_ASKPASS program printing password.
func (s *server) sshPassword(t *testing.T, user, password string, args ...string) *exec.Cmd {
	t.Helper()
	askpass := filepath.Join(t.TempDir(), "askpass")
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\nprintf '%s\\n' '"+password+"'\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	a := []string{"-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "BatchMode=no", "-o", "PreferredAuthentications=password",
		"-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1", "-p", s.port, user + "@127.0.0.1"}
	cmd := exec.Command("ssh", append(a, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dir,
		"SSH_ASKPASS=" + askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0"}
	return cmd
}

// TestWebhookAuth runs podgate in webhook mode against a test auth server
// and logs in with the real ssh: keys and passwords, allowed and denied,
// and a profile named by the webhook's answer.
func TestWebhookAuth(t *testing.T) {
	env := kubetest.New(t)
	// The profile the webhook hands to carol; users cannot pick it
	// themselves, and its pods carry a mark a session can print.
	no := false
	pt := &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "hooked", Labels: map[string]string{"podgate.io/profile": "hooked"},
			Annotations: map[string]string{"podgate.io/user-selectable": "false", "podgate.io/pool-min": "1", "podgate.io/pool-max": "2"}},
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "main", Image: kubetest.DebianImage, ImagePullPolicy: corev1.PullNever,
				Env: []corev1.EnvVar{{Name: "HOOK_MARK", Value: "from-webhook"}}}},
		}},
	}
	if _, err := env.Client.CoreV1().PodTemplates(env.Namespace).Create(context.Background(), pt, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hook := &authHook{password: "correct horse battery", profiles: map[string]string{"carol": "hooked"}}
	hs := httptest.NewServer(hook)
	t.Cleanup(hs.Close)
	s := startPodgate(t, env, "PODGATE_AUTH_MODE=webhook", "PODGATE_AUTH_WEBHOOK_URL="+hs.URL,
		"PODGATE_AUTH_WEBHOOK_RETRIES=0")
	pub, err := os.ReadFile(s.key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	hook.mu.Lock()
	hook.key = keyBody(string(pub))
	hook.mu.Unlock()

	t.Run("key allowed", func(t *testing.T) {
		out, errOut, code := runCmd(t, s.ssh("alice", `echo "user=$(id -u) mark=$HOOK_MARK"`), nil)
		if code != 0 || strings.TrimSpace(out) != "user=1000 mark=" {
			t.Fatalf("alice's key: exit %d, %q, stderr %q; want the default profile", code, out, errOut)
		}
		req, _ := hook.last("/pubkey")
		if req.Username != "alice" || !strings.HasPrefix(req.RemoteAddress, "127.0.0.1:") || req.ConnectionID == "" {
			t.Errorf("webhook saw %+v; want username, remoteAddress and connectionId", req)
		}
	})
	t.Run("key denied", func(t *testing.T) {
		c := exec.Command("ssh", append(s.sshArgs(filepath.Join(s.dir, "mallory"), "-p", s.port), "alice@127.0.0.1", "true")...)
		_, errOut, code := runCmd(t, c, nil)
		if code != 255 || !strings.Contains(errOut, "Permission denied") {
			t.Errorf("unknown key: exit %d, %q; want 255 and Permission denied", code, errOut)
		}
	})
	t.Run("password allowed", func(t *testing.T) {
		out, errOut, code := runCmd(t, s.sshPassword(t, "dave", "correct horse battery", "echo pw-ok"), nil)
		if code != 0 || strings.TrimSpace(out) != "pw-ok" {
			t.Fatalf("right password: exit %d, %q, stderr %q", code, out, errOut)
		}
		req, ok := hook.last("/password")
		if pw, _ := base64.StdEncoding.DecodeString(req.PasswordBase64); !ok || req.Username != "dave" || string(pw) != "correct horse battery" {
			t.Errorf("webhook saw %+v", req)
		}
	})
	t.Run("password denied", func(t *testing.T) {
		_, errOut, code := runCmd(t, s.sshPassword(t, "dave", "wrong", "echo pw-ok"), nil)
		if code != 255 || !strings.Contains(errOut, "Permission denied") {
			t.Errorf("wrong password: exit %d, %q; want 255 and Permission denied", code, errOut)
		}
	})
	t.Run("profile named by the webhook", func(t *testing.T) {
		// The profile reaches podgate through its informer; until then a
		// login naming it is refused, so wait for a command to run.
		var out string
		eventually(t, kubetest.Timeout, "carol landing in the webhook's profile", func() bool {
			o, _, code := runCmd(t, s.ssh("carol", `echo "mark=$HOOK_MARK"`), nil)
			out = strings.TrimSpace(o)
			return code == 0 && out == "mark=from-webhook"
		})
		// The same key as alice gets the default profile: the answer,
		// not the key, chose it.
		if o, _, _ := runCmd(t, s.ssh("alice", `echo "mark=$HOOK_MARK"`), nil); strings.TrimSpace(o) != "mark=" {
			t.Errorf("alice got %q, want the default profile", o)
		}
		// Nobody picks the profile by login name: it is not user-selectable.
		if _, _, code := runCmd(t, s.ssh("alice+hooked", "true"), nil); code == 0 {
			t.Error("alice+hooked logged in to a profile that is not user-selectable")
		}
	})
}
