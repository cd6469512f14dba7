package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgate/podgate/internal/testenv/kubetest"
)

// sshInfo is an OpenSSH client at log level INFO, at which it prints the
// server's pre-auth banner; LogLevel comes first because the first value
// of an ssh option wins.
func (s *server) sshInfo(key, login string, args ...string) *exec.Cmd {
	a := append([]string{"-o", "LogLevel=INFO"}, s.sshArgs(key, "-p", s.port, login+"@127.0.0.1")...)
	return exec.Command("ssh", append(a, args...)...)
}

// terminalWithoutProgress drops the "waiting for a pod" lines a terminal
// session shows while its pod starts.
func terminalWithoutProgress(out string) string {
	var keep []string
	for _, l := range strings.SplitAfter(out, "\r\n") {
		if !strings.HasPrefix(l, "waiting for a pod") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}

// TestLoginExperience: the pre-auth banner, the message of the day, the
// session environment sshd users rely on, and a file-transfer-only
// profile, through the real binary and the real OpenSSH clients.
func TestLoginExperience(t *testing.T) {
	env := kubetest.New(t)
	dir := t.TempDir()
	banner := filepath.Join(dir, "banner")
	motdFile := filepath.Join(dir, "motd")
	os.WriteFile(banner, []byte("Authorized use only: podgate e2e.\n"), 0o600)
	os.WriteFile(motdFile, []byte("Welcome {user} to {profile}.\nHave fun.\n"), 0o600)
	s := startPodgate(t, env, "PODGATE_BANNER_FILE="+banner, "PODGATE_MOTD_FILE="+motdFile)

	t.Run("banner before authentication", func(t *testing.T) {
		_, errOut, code := runCmd(t, s.sshInfo(filepath.Join(s.dir, "mallory"), "alice", "true"), nil)
		if code != 255 || !strings.Contains(errOut, "Authorized use only: podgate e2e.") {
			t.Errorf("refused login: exit %d, stderr %q; want the banner before the refusal", code, errOut)
		}
	})
	t.Run("message of the day on interactive terminals only", func(t *testing.T) {
		out, errOut, code := runCmd(t, exec.Command("ssh", append(s.sshArgs(s.key, "-tt", "-p", s.port), "alice@127.0.0.1")...), []byte("exit 0\n"))
		if code != 0 || !strings.HasPrefix(terminalWithoutProgress(out), "Welcome alice to default.\r\nHave fun.\r\n") {
			t.Errorf("login shell: exit %d, stdout %q, stderr %q; want the MOTD first", code, out, errOut)
		}
		out, _, _ = runCmd(t, s.ssh("alice", "echo plain"), nil)
		if out != "plain\n" {
			t.Errorf("exec output %q, want nothing but the command's", out)
		}
	})
	t.Run("session environment", func(t *testing.T) {
		out, _, code := runCmd(t, s.ssh("alice", `echo "$USER|$LOGNAME|$PODGATE_USER|$SSH_CLIENT|$SSH_CONNECTION|${SSH_TTY-none}|$(id -un)"`), nil)
		f := strings.Split(strings.TrimSpace(out), "|")
		if code != 0 || len(f) != 7 {
			t.Fatalf("exit %d, %q", code, out)
		}
		// USER and LOGNAME are the pod's account, as whoami says; the
		// podgate user is PODGATE_USER.
		if f[0] != "user" || f[1] != "user" || f[6] != "user" || f[2] != "alice" {
			t.Errorf("USER %q LOGNAME %q PODGATE_USER %q id -un %q; want user, user, alice, user", f[0], f[1], f[2], f[6])
		}
		client, conn := strings.Fields(f[3]), strings.Fields(f[4])
		if len(client) != 3 || client[0] != "127.0.0.1" || client[2] != s.port ||
			len(conn) != 4 || conn[0] != "127.0.0.1" || conn[1] != client[1] || conn[2] != "127.0.0.1" || conn[3] != s.port {
			t.Errorf("SSH_CLIENT %q, SSH_CONNECTION %q; want the addresses podgate saw", f[3], f[4])
		}
		if f[5] != "none" {
			t.Errorf("SSH_TTY %q without a terminal", f[5])
		}
		out, _, _ = runCmd(t, s.ssh("alice", "-tt", `echo "tty=$SSH_TTY=$(tty)"`), nil)
		m := regexp.MustCompile(`^tty=(/dev/pts/\d+)=(/dev/pts/\d+)\r\n$`).FindStringSubmatch(terminalWithoutProgress(out))
		if m == nil || m[1] != m[2] {
			t.Errorf("with a terminal: %q, want SSH_TTY naming the session's terminal", out)
		}
	})
	t.Run("a malformed setting disables its profile only", func(t *testing.T) {
		pt := &corev1.PodTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: "broken", Labels: map[string]string{"podgate.io/profile": "broken"},
				Annotations: map[string]string{"podgate.io/user-selectable": "true", "podgate.io/user-ca-keys": "ssh-ed25519 not-a-key"}},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: kubetest.DebianImage}}}},
		}
		if _, err := s.env.Client.CoreV1().PodTemplates(s.env.Namespace).Create(context.Background(), pt, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, kubetest.Timeout, "the invalid profile's log line", func() bool {
			return strings.Contains(s.Log.String(), `msg="invalid profile" profile=broken podtemplate=broken err="podtemplate \"broken\": annotation podgate.io/user-ca-keys: line 1: not an OpenSSH public key"`)
		})
		if _, errOut, code := runCmd(t, s.ssh("alice+broken", "true"), nil); code != 1 || !strings.Contains(errOut, "misconfigured") {
			t.Errorf("login to the broken profile: exit %d, %q", code, errOut)
		}
		if out, _, code := runCmd(t, s.ssh("alice", "echo still-fine"), nil); code != 0 || strings.TrimSpace(out) != "still-fine" {
			t.Errorf("the default profile after a broken one appeared: exit %d, %q", code, out)
		}
	})
	t.Run("file transfer only", func(t *testing.T) {
		createProfile(t, s, "files", map[string]string{
			"podgate.io/disable-command": "true", "podgate.io/user-selectable": "true",
			"podgate.io/banner": "Drop files here; nothing else.", "podgate.io/pool-min": "1",
			// scp's upload and sftp's download, two connections, land
			// in the same pod.
			"podgate.io/reconnect-window": "60s",
		}, debianSpec("files"), shellSucceeds(t, fmt.Sprintf("echo ls | sftp %s -P %s -b - alice+files@127.0.0.1", strings.Join(s.sshArgs(s.key), " "), s.port)))
		_, errOut, code := runCmd(t, s.sshInfo(s.key, "alice+files", "id"), nil)
		if code != 1 || !strings.Contains(errOut, "file transfer only: use sftp, or scp without -O") || !strings.Contains(errOut, "Drop files here") {
			t.Errorf("exec in a file-transfer-only profile: exit %d, stderr %q", code, errOut)
		}
		out, _, code := runCmd(t, exec.Command("ssh", append(s.sshArgs(s.key, "-tt", "-p", s.port), "alice+files@127.0.0.1")...), []byte("id\n"))
		if code != 1 || !strings.Contains(out, "file transfer only") {
			t.Errorf("shell in a file-transfer-only profile: exit %d, stdout %q", code, out)
		}
		local := filepath.Join(dir, "drop.txt")
		os.WriteFile(local, []byte("dropped file\n"), 0o600)
		up := exec.Command("scp", append(s.sshArgs(s.key, "-P", s.port), local, "alice+files@127.0.0.1:drop.txt")...)
		if _, errOut, code := runCmd(t, up, nil); code != 0 {
			t.Fatalf("scp (over sftp) upload: exit %d, %s", code, errOut)
		}
		back := filepath.Join(dir, "back.txt")
		batch := filepath.Join(dir, "batch")
		os.WriteFile(batch, []byte("get drop.txt "+back+"\n"), 0o600)
		sftp := exec.Command("sftp", append(s.sshArgs(s.key, "-P", s.port, "-b", batch), "alice+files@127.0.0.1")...)
		if _, errOut, code := runCmd(t, sftp, nil); code != 0 {
			t.Fatalf("sftp download: exit %d, %s", code, errOut)
		}
		sameFile(t, local, back)
		legacy := exec.Command("scp", append(s.sshArgs(s.key, "-O", "-P", s.port), local, "alice+files@127.0.0.1:legacy.txt")...)
		if _, errOut, code := runCmd(t, legacy, nil); code == 0 || !strings.Contains(errOut, "scp without -O") {
			t.Errorf("legacy scp -O: exit %d, stderr %q; want refused with the reason", code, errOut)
		}
	})
}
