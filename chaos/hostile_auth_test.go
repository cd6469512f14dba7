package chaos

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/internal/testenv/kubetest"
)

// authHook is a test auth webhook speaking the protocol podgate's webhook
// mode uses: it accepts one password and one public key for user alice and
// counts every call it gets.
type authHook struct {
	*httptest.Server
	password string
	pubkey   string // authorized_keys format, trimmed

	passwordCalls, pubkeyCalls atomic.Int64
}

func newAuthHook(t *testing.T, password, pubkey string) *authHook {
	h := &authHook{password: password, pubkey: strings.TrimSpace(pubkey)}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Username       string `json:"username"`
			PasswordBase64 string `json:"passwordBase64"`
			PublicKey      string `json:"publicKey"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ok := false
		switch r.URL.Path {
		case "/password":
			h.passwordCalls.Add(1)
			pw, _ := base64.StdEncoding.DecodeString(req.PasswordBase64)
			ok = req.Username == "alice" && string(pw) == h.password
		case "/pubkey":
			h.pubkeyCalls.Add(1)
			// The key travels as "type base64"; compare those fields.
			ok = req.Username == "alice" && keyFields(req.PublicKey) == keyFields(h.pubkey)
		default:
			http.NotFound(w, r)
			return
		}
		resp := map[string]any{"success": ok}
		if ok {
			resp["authenticatedUsername"] = "alice"
		}
		_ = json.NewEncoder(w).Encode(resp)
	}))
	t.Cleanup(h.Close)
	return h
}

func keyFields(k string) string {
	f := strings.Fields(k)
	if len(f) < 2 {
		return k
	}
	return f[0] + " " + f[1]
}

// TestHostileCredentialGuessing makes 1000 bad password attempts from one
// address with Go clients against podgate in webhook mode, and checks that
// the webhook sees only the attempts before the throttle, that the rest are
// refused without reaching it, that the operator log has one throttle line
// per window, and that no password reaches any log.
func TestHostileCredentialGuessing(t *testing.T) {
	env := kubetest.New(t)
	sc := NewScenario(t, "hostile", "credential guessing")
	const failures, attempts, window = 10, 1000, time.Minute
	hook := newAuthHook(t, "correct horse battery staple", "")
	g := startGate(t, env, gateOpts{WaitIdle: 1, Env: []string{
		"PODGATE_POOL_MIN=1", "PODGATE_POOL_MAX=1", "PODGATE_POD_CPU_REQUEST=10m",
		"PODGATE_AUTH_MODE=webhook", "PODGATE_AUTH_WEBHOOK_URL=" + hook.URL,
		fmt.Sprintf("PODGATE_AUTH_THROTTLE_FAILURES=%d", failures), "PODGATE_AUTH_THROTTLE_WINDOW=" + window.String(),
		"PODGATE_MAX_CONNECTIONS_PER_IP=0", "PODGATE_MAX_PREAUTH=64",
	}})
	sc.Figure("settings", "webhook auth, PODGATE_AUTH_THROTTLE_FAILURES=%d per %v, MAX_AUTH_TRIES 6 per connection", failures, window)

	var tried atomic.Int64
	conns := 0
	start := time.Now()
	for tried.Load() < attempts {
		conns++
		i := conns
		cb := ssh.RetryableAuthMethod(ssh.PasswordCallback(func() (string, error) {
			n := tried.Add(1)
			return fmt.Sprintf("guess-%d-%d", i, n), nil
		}), 6)
		c, _, err := dialSSH(g.Addr(), clientConfig("alice", cb))
		if err == nil {
			c.Close()
			sc.Check(false, "no guess succeeds", "connection %d authenticated", i)
			break
		}
	}
	elapsed := time.Since(start)
	sc.Figure("attempts", "%d password attempts over %d connections in %.1f s", tried.Load(), conns, elapsed.Seconds())
	hookCalls := hook.passwordCalls.Load()
	sc.Figure("webhook calls", "%d password checks reached the webhook", hookCalls)
	sc.Check(hookCalls == failures, "the webhook sees only the attempts before throttling", "%d calls, limit %d", hookCalls, failures)
	throttled := g.metric("podgate_auth_attempts_total", "method", "password", "result", "throttled")
	failed := g.metric("podgate_auth_attempts_total", "method", "password", "result", "failure")
	sc.Figure("podgate_auth_attempts_total", "failure %v, throttled %v", failed, throttled)
	sc.Check(throttled >= float64(attempts-failures)-6, "every later attempt is throttled", "throttled %v of %d", throttled, attempts)

	// The right password from the same address is refused while the
	// address is throttled, without asking the webhook.
	_, _, err := dialSSH(g.Addr(), clientConfig("alice", ssh.Password(hook.password)))
	sc.Check(err != nil && hook.passwordCalls.Load() == failures, "a throttled address cannot log in even with the right password, and the webhook is not asked", "err %v, webhook calls %d", err, hook.passwordCalls.Load())

	log := g.Log.String()
	lines := strings.Count(log, "throttling authentication attempts")
	windows := int(elapsed/window) + 1
	sc.Figure("throttle log lines", "%d for %d attempts over %.0f s (window %v)", lines, attempts, elapsed.Seconds(), window)
	sc.Check(lines >= 1 && lines <= windows, "the operator log has one throttle line per window, not one per attempt", "%d lines, %d windows", lines, windows)

	audit, _ := os.ReadFile(g.AuditLog)
	leaked := 0
	for _, s := range []string{"guess-1-1", "guess-", hook.password} {
		leaked += strings.Count(log, s) + strings.Count(string(audit), s)
	}
	sc.Check(leaked == 0, "no password appears in the operator or audit log", "%d occurrences", leaked)
}
