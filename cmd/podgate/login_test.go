package main

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podgate/podgate/scheduler"
)

// TestLoadConfigLoginSettings: each malformed login or recording setting
// is refused at start-up with one line naming its variable.
func TestLoadConfigLoginSettings(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := filepath.Join(dir, "ca")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", caFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	good := []string{
		"PODGATE_BANNER_FILE=" + write("banner", "Authorized use only.\r\n"),
		"PODGATE_MOTD_FILE=" + write("motd", "Hello {user}\n"),
		"PODGATE_USER_CA_KEYS=" + caFile + ".pub",
		"PODGATE_REVOKED_KEYS=" + write("revoked", "serial: 3\nid: lost\n"),
		"PODGATE_RECORD=input", "PODGATE_RECORD_DIR=" + dir, "PODGATE_RECORD_MAX_SIZE=10Mi",
		"PODGATE_DISABLE_COMMAND=true",
	}
	cfg, err := LoadConfig(append(validEnv(t), good...))
	if err != nil {
		t.Fatalf("good settings: %v", err)
	}
	if cfg.Profile.Record != scheduler.RecordInput || !cfg.Profile.DisableCommand || cfg.Record.Dir != dir {
		t.Errorf("loaded %+v %+v", cfg.Profile, cfg.Record)
	}
	l, err := loadLogin(cfg, slog.New(slog.DiscardHandler))
	if err != nil || l.banner != "Authorized use only.\n" || l.motd != "Hello {user}\n" || len(l.caKeys) != 1 {
		t.Errorf("loadLogin = %+v, %v", l, err)
	}

	for _, tt := range []struct{ kind, set, wantVar, wantText string }{
		{"banner escape", "PODGATE_BANNER_FILE=" + write("b1", "\x1b[31mred"), "PODGATE_BANNER_FILE", "malformed banner: control character"},
		{"banner encoding", "PODGATE_BANNER_FILE=" + write("b2", "\xff"), "PODGATE_BANNER_FILE", "not valid UTF-8"},
		{"banner size", "PODGATE_BANNER_FILE=" + write("b3", strings.Repeat("x", 9000)), "PODGATE_BANNER_FILE", "larger than 8192 bytes"},
		{"motd placeholder", "PODGATE_MOTD_FILE=" + write("m1", "Hi {name}"), "PODGATE_MOTD_FILE", "unknown placeholder {name}"},
		{"ca key", "PODGATE_USER_CA_KEYS=" + write("ca1", "ssh-ed25519 AAAA broken"), "PODGATE_USER_CA_KEYS", "malformed CA key list: line 1"},
		{"ca private key", "PODGATE_USER_CA_KEYS=" + caFile, "PODGATE_USER_CA_KEYS", "malformed CA key list"},
		{"revocations", "PODGATE_REVOKED_KEYS=" + write("r1", "serial: 3\nserials: 4\n"), "PODGATE_REVOKED_KEYS", "line 2"},
		{"record without dir", "PODGATE_RECORD=output", "PODGATE_RECORD", "needs PODGATE_RECORD_DIR"},
		{"record dir unwritable", "PODGATE_RECORD_DIR=/proc", "PODGATE_RECORD_DIR", "not writable"},
		{"record dir missing", "PODGATE_RECORD_DIR=" + filepath.Join(dir, "none"), "PODGATE_RECORD_DIR", "no such file"},
		{"record size", "PODGATE_RECORD_MAX_SIZE=1", "PODGATE_RECORD_MAX_SIZE", "outside 4Ki..64Gi"},
		{"record mode", "PODGATE_RECORD=all", "PODGATE_RECORD", "not one of off, output, input"},
		{"sftp-only without sftp", "PODGATE_DISABLE_COMMAND=true\x00PODGATE_SFTP_PATH=none", "PODGATE_DISABLE_COMMAND", "leaves nothing to run"},
		{"ca in demo mode", "PODGATE_AUTH_MODE=demo\x00PODGATE_USER_CA_KEYS=" + caFile + ".pub", "PODGATE_USER_CA_KEYS", "no effect in demo mode"},
	} {
		t.Run(tt.kind, func(t *testing.T) {
			_, err := LoadConfig(append(validEnv(t), strings.Split(tt.set, "\x00")...))
			wantProblem(t, err, tt.wantVar, tt.wantText)
			if err != nil && strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("want one line, got %q", err)
			}
		})
	}
}

func TestLoadConfigCertsModeNeedsNoAuthorizedKeys(t *testing.T) {
	if _, err := LoadConfig([]string{"PODGATE_AUTH_MODE=certs", "PODGATE_AUTHORIZED_KEYS=/nonexistent", "PODGATE_REPLICA_ID=r"}); err != nil {
		t.Errorf("certs mode: %v", err)
	}
}
