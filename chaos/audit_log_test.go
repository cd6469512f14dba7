package chaos

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

// TestAuditLog logs in with a key (OpenSSH) and with a password (Go
// client), runs sessions that exit with a status and with a signal, fails
// one login, and checks the audit file: one JSON line per connection and
// per session with who, from where, pod, profile, command, when, how long
// and the exit status, and no password or key material in the audit or
// the operator log.
func TestAuditLog(t *testing.T) {
	env := kubetest.New(t)
	sc := NewScenario(t, "isolation", "audit log")
	dir := t.TempDir()
	key := filepath.Join(dir, "alice")
	if err := podgatetest.Keygen(key); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	priv, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	const password, wrong = "audit-Secret-4711", "wrong-Secret-0815"
	hook := newAuthHook(t, password, string(pub))
	g := startGate(t, env, gateOpts{WaitIdle: 2, Env: []string{
		"PODGATE_POOL_MIN=2", "PODGATE_POOL_MAX=3", "PODGATE_POD_CPU_REQUEST=10m",
		"PODGATE_AUTH_MODE=webhook", "PODGATE_AUTH_WEBHOOK_URL=" + hook.URL, "PODGATE_LOG_LEVEL=debug",
	}})
	g.Keys["alice"] = key

	// 1. OpenSSH, key auth, a command with an exit status.
	_, e, code := runSSH(g.SSH("alice", "alice", "echo hi; exit 3"), "", time.Minute)
	sc.Check(code == 3, "OpenSSH session ran", "exit %d, err %q", code, e)
	// 2. Go client, password auth, two sessions: one clean, one killed.
	c, _, err := dialSSH(g.Addr(), clientConfig("alice", ssh.Password(password)))
	if err != nil {
		t.Fatal(err)
	}
	_, code1, _ := output(c, "true")
	_, code2, _ := output(c, "kill -KILL $$")
	c.Close()
	sc.Check(code1 == 0 && code2 != 0, "password sessions ran", "exits %d, %d", code1, code2)
	// 3. A refused login.
	_, _, err = dialSSH(g.Addr(), clientConfig("alice", ssh.Password(wrong)))
	sc.Check(err != nil, "a wrong password is refused", "%v", err)
	// Stop podgate so that every line is written.
	if err := g.Stop(30 * time.Second); err != nil {
		t.Error(err)
	}

	raw, err := os.ReadFile(g.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	var conns, refused, sessions []map[string]any
	bad := 0
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			bad++
			continue
		}
		switch {
		case m["msg"] == "connection" && m["authenticated"] == true:
			conns = append(conns, m)
		case m["msg"] == "connection":
			refused = append(refused, m)
		case m["msg"] == "session":
			sessions = append(sessions, m)
		}
	}
	sc.Figure("audit lines", "%d connection, %d refused-login, %d session, %d not JSON", len(conns), len(refused), len(sessions), bad)
	sc.Check(bad == 0, "every audit line is one JSON object", "%d bad lines", bad)
	sc.Check(len(conns) == 2 && len(sessions) == 3 && len(refused) == 1,
		"one line per connection, per session and per refused connection", "%d connections, %d sessions, %d refused", len(conns), len(sessions), len(refused))
	has := func(m map[string]any, fields ...string) []string {
		var missing []string
		for _, f := range fields {
			if v, ok := m[f]; !ok || v == "" || v == nil {
				missing = append(missing, f)
			}
		}
		return missing
	}
	pods := map[string]bool{}
	for _, m := range conns {
		missing := has(m, "user", "remote", "pod", "profile", "start", "duration", "conn_id", "time")
		sc.Check(len(missing) == 0 && m["user"] == "alice" && strings.HasPrefix(m["remote"].(string), "127.0.0.1:"),
			"connection line gives who, from where, pod, profile, when and how long", "missing %v in %v", missing, m)
		if p, ok := m["pod"].(string); ok {
			pods[p] = true
		}
	}
	var codes []float64
	for _, m := range sessions {
		missing := has(m, "user", "remote", "pod", "profile", "command", "start", "duration", "exit_code", "conn_id")
		sc.Check(len(missing) == 0 && pods[m["pod"].(string)],
			"session line gives who, from where, pod (its connection's), profile, command, when, how long and exit status", "missing %v in %v", missing, m)
		if v, ok := m["exit_code"].(float64); ok {
			codes = append(codes, v)
		}
	}
	sig := ""
	for _, m := range sessions {
		if s, ok := m["exit_signal"].(string); ok && s != "" {
			sig = s
		}
	}
	sc.Figure("session exits", "codes %v, signal %q", codes, sig)
	sc.Check(len(codes) == 3, "every session line has its exit status", "codes %v", codes)
	sc.Figure("exit signal of the killed session", "%q", sig)
	if len(refused) == 1 {
		sc.Check(refused[0]["login"] == "alice" && refused[0]["remote"] != nil && refused[0]["auth_failures"] != nil,
			"the refused login is audited with the login name, source and failure count", "%v", refused[0])
	}

	// No secret anywhere.
	log := g.Log.String()
	secrets := map[string]string{
		"password":             password,
		"wrong password":       wrong,
		"public key base64":    strings.Fields(string(pub))[1],
		"private key (a line)": strings.Split(string(priv), "\n")[2],
	}
	for what, s := range secrets {
		n := strings.Count(string(raw), s) + strings.Count(log, s)
		sc.Check(n == 0, what+" never appears in the audit or operator log (debug level)", "%d occurrences", n)
	}
	sc.Check(hook.pubkeyCalls.Load() > 0 && hook.passwordCalls.Load() > 0, "the webhook saw both methods (the secrets were in play)", "pubkey %d, password %d", hook.pubkeyCalls.Load(), hook.passwordCalls.Load())
}
