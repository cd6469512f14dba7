package sshfront

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// auditLines decodes the audit buffer's JSON lines with the given msg.
func auditLines(t *testing.T, h *harness, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(h.audit.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line is not JSON: %q: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestAuditRefusedLogin: a connection whose logins all fail leaves one
// audit line (not one per attempt) saying who tried from where and how
// often, without any key material.
func TestAuditRefusedLogin(t *testing.T) {
	h := newHarness(t)
	mallory, _ := newTestKey(t, h.dir, "mallory_key")
	if _, err := h.dial("alice", mallory); err == nil {
		t.Fatal("mallory's key logged in as alice")
	}
	var lines []map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for len(lines) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // the server writes after the client gave up
		lines = auditLines(t, h, "connection")
	}
	if len(lines) != 1 {
		t.Fatalf("want one connection line, got %d: %s", len(lines), h.audit.String())
	}
	l := lines[0]
	if l["authenticated"] != false || l["login"] != "alice" || l["auth_failures"] == nil || l["remote"] == nil {
		t.Errorf("refused-login line lacks fields: %v", l)
	}
	pub := strings.Fields(string(ssh.MarshalAuthorizedKey(mallory.PublicKey())))[1]
	if strings.Contains(h.audit.String(), pub) || strings.Contains(h.logs.String(), pub) {
		t.Error("key material in the logs")
	}
}

// TestAuditSessionNamesPod: a session's audit line names the pod it ran
// in, next to the command and its exit status.
func TestAuditSessionNamesPod(t *testing.T) {
	h := newHarness(t)
	c := h.mustDial("alice")
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Run("echo hi")
	s.Close()
	c.Close()
	var lines []map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for len(auditLines(t, h, "connection")) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	lines = auditLines(t, h, "session")
	if len(lines) != 1 || lines[0]["pod"] != "pod-1" || lines[0]["command"] != "echo hi" || lines[0]["profile"] != "default" {
		t.Fatalf("session lines %v", lines)
	}
	if conn := auditLines(t, h, "connection"); len(conn) != 1 || conn[0]["authenticated"] != true || conn[0]["pod"] != "pod-1" || conn[0]["profile"] != "default" {
		t.Errorf("connection lines %v", conn)
	}
}
