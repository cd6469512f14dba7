package main

import (
	"context"

	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podgate/podgate/internal/testenv/hosttools"
	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

// TestOpenSSH drives the real podgate binary with the real OpenSSH client
// binaries on the real cluster, in the Debian guest image: what a user of
// ssh, scp and sftp expects from any host.
func TestOpenSSH(t *testing.T) {
	env := kubetest.New(t)
	hosttools.Require(t, "scp", "sftp")
	// A reconnect window lets scp's upload and download, two connections,
	// land in the same pod, as they would on one host.
	s := startPodgate(t, env, "PODGATE_PORT_FORWARDING=true", "PODGATE_RECONNECT_WINDOW=60s")

	t.Run("exit status", func(t *testing.T) {
		out, _, code := runCmd(t, s.ssh("alice", "id -u; exit 42"), nil)
		if code != 42 || strings.TrimSpace(out) != "1000" {
			t.Errorf("ssh 'id -u; exit 42': code %d, output %q; want 42 and 1000", code, out)
		}
	})
	t.Run("stdout and stderr apart", func(t *testing.T) {
		out, errOut, code := runCmd(t, s.ssh("alice", "echo out; echo err >&2"), nil)
		if code != 0 || out != "out\n" || withoutProgress(errOut) != "err" {
			t.Errorf("got code %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
	t.Run("20 MB through cat", func(t *testing.T) {
		data := make([]byte, 20<<20)
		rand.Read(data)
		out, errOut, code := runCmd(t, s.ssh("alice", "cat"), data)
		if code != 0 || sha256.Sum256([]byte(out)) != sha256.Sum256(data) {
			t.Errorf("cat round trip: code %d, %d bytes back of %d, stderr %q", code, len(out), len(data), errOut)
		}
	})
	t.Run("env allowlist", func(t *testing.T) {
		cmd := s.ssh("alice", "-o", "SendEnv=LANG", "-o", "SendEnv=SECRET_TOKEN", `echo "LANG=$LANG SECRET_TOKEN=$SECRET_TOKEN"`)
		cmd.Env = append(os.Environ(), "LANG=C.UTF-8", "SECRET_TOKEN=leak")
		// ssh puts options before the destination; rebuild with them first.
		cmd.Args = append([]string{"ssh", "-o", "SendEnv=LANG", "-o", "SendEnv=SECRET_TOKEN"}, s.sshArgs(s.key, "-p", s.port, "alice@127.0.0.1", `echo "LANG=$LANG SECRET_TOKEN=$SECRET_TOKEN"`)...)
		out, _, _ := runCmd(t, cmd, nil)
		if strings.TrimSpace(out) != "LANG=C.UTF-8 SECRET_TOKEN=" {
			t.Errorf("got %q, want LANG passed and SECRET_TOKEN refused", out)
		}
	})
	t.Run("sftp and scp", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "src.bin")
		data := make([]byte, 20<<20)
		rand.Read(data)
		if err := os.WriteFile(src, data, 0o600); err != nil {
			t.Fatal(err)
		}
		batch := filepath.Join(dir, "batch")
		back := filepath.Join(dir, "back.bin")
		os.WriteFile(batch, []byte(fmt.Sprintf("put %s up.bin\nget up.bin %s\n", src, back)), 0o600)
		sftp := exec.Command("sftp", append(s.sshArgs(s.key, "-P", s.port, "-b", batch), "alice@127.0.0.1")...)
		if _, errOut, code := runCmd(t, sftp, nil); code != 0 {
			t.Fatalf("sftp -b: exit %d: %s", code, errOut)
		}
		sameFile(t, src, back)
		scpBack := filepath.Join(dir, "scp.bin")
		up := exec.Command("scp", append(s.sshArgs(s.key, "-P", s.port), src, "alice@127.0.0.1:scp.bin")...)
		if _, errOut, code := runCmd(t, up, nil); code != 0 {
			t.Fatalf("scp upload: exit %d: %s", code, errOut)
		}
		down := exec.Command("scp", append(s.sshArgs(s.key, "-P", s.port), "alice@127.0.0.1:scp.bin", scpBack)...)
		if _, errOut, code := runCmd(t, down, nil); code != 0 {
			t.Fatalf("scp download: exit %d: %s", code, errOut)
		}
		sameFile(t, src, scpBack)
	})
	t.Run("ControlMaster shares one pod", func(t *testing.T) {
		ctl := filepath.Join(t.TempDir(), "ctl")
		master := exec.Command("ssh", append(s.sshArgs(s.key, "-p", s.port, "-o", "ControlMaster=yes", "-o", "ControlPath="+ctl, "-N"), "alice@127.0.0.1")...)
		if err := master.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { master.Process.Kill(); master.Wait() }()
		mux := func(cmd string) string {
			c := exec.Command("ssh", append(s.sshArgs(s.key, "-p", s.port, "-o", "ControlMaster=no", "-o", "ControlPath="+ctl), "alice@127.0.0.1", cmd)...)
			out, errOut, code := runCmd(t, c, nil)
			if code != 0 {
				t.Fatalf("mux session %q: exit %d: %s", cmd, code, errOut)
			}
			return strings.TrimSpace(out)
		}
		// The master connects in the background; the first mux session
		// waits for the control socket through ssh's own retry.
		waitFile(t, ctl)
		h1 := mux("hostname; echo shared >/tmp/mux-file")
		h2 := mux("hostname")
		h3 := mux("hostname; cat /tmp/mux-file")
		if h1 != h2 || h3 != h1+"\nshared" {
			t.Errorf("sessions were not in one pod: %q, %q, %q", h1, h2, h3)
		}
	})
	t.Run("ssh -L into the pod", func(t *testing.T) {
		// The server runs in the forwarding connection's own pod.
		local := freePort(t)
		fwd := exec.Command("ssh", append(s.sshArgs(s.key, "-p", s.port, "-L", local+":localhost:8080"), "alice@127.0.0.1",
			"mkdir -p /tmp/www && echo hello-from-pod >/tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www")...)
		if err := fwd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { fwd.Process.Kill(); fwd.Wait() }()
		body := httpGetRetry(t, "http://127.0.0.1:"+local+"/index.html")
		if strings.TrimSpace(body) != "hello-from-pod" {
			t.Errorf("GET through ssh -L: %q", body)
		}
	})
	t.Run("ssh -L refused where the profile has forwarding off", func(t *testing.T) {
		// The template names no command on purpose: the profile gives
		// its container the idle command (the image's CMD, bash, would
		// exit at once without stdin and the pod would end as a crash).
		no := false
		pt := &corev1.PodTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: "nofwd", Labels: map[string]string{"podgate.io/profile": "nofwd"},
				Annotations: map[string]string{"podgate.io/port-forwarding": "false", "podgate.io/user-selectable": "true",
					"podgate.io/pool-min": "0", "podgate.io/shell": `["/bin/bash","-l"]`}},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				AutomountServiceAccountToken: &no,
				Containers:                   []corev1.Container{{Name: "main", Image: kubetest.DebianImage, ImagePullPolicy: corev1.PullNever}},
			}},
		}
		if _, err := env.Client.CoreV1().PodTemplates(env.Namespace).Create(context.Background(), pt, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The profile is picked up by the informer; a login before that
		// is refused as unknown, so wait until a command runs in it.
		eventually(t, kubetest.Timeout, "profile nofwd becoming usable", func() bool {
			out, _, code := runCmd(t, s.ssh("alice+nofwd", "echo in-nofwd"), nil)
			return code == 0 && strings.TrimSpace(out) == "in-nofwd"
		})
		local := freePort(t)
		// ssh reports a refused channel at level INFO; the option comes
		// first because the first value of an ssh option wins.
		fwd := exec.Command("ssh", append(append([]string{"-o", "LogLevel=INFO"}, s.sshArgs(s.key, "-p", s.port, "-o", "ExitOnForwardFailure=no", "-L", local+":localhost:8080")...), "alice+nofwd@127.0.0.1",
			"mkdir -p /tmp/www && echo hello >/tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www")...)
		// ssh writes stderr from its own goroutine while the test reads it.
		fwdErr := &podgatetest.SafeBuffer{}
		fwd.Stderr = fwdErr
		if err := fwd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { fwd.Process.Kill(); fwd.Wait() }()
		eventually(t, 30*time.Second, "ssh reporting the refused forward", func() bool {
			if resp, err := http.Get("http://127.0.0.1:" + local + "/index.html"); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Fatalf("forward worked on a profile with forwarding off: %q", b)
			}
			return strings.Contains(fwdErr.String(), "administratively prohibited")
		})
	})
	t.Run("wrong key refused", func(t *testing.T) {
		c := exec.Command("ssh", append(s.sshArgs(filepath.Join(s.dir, "mallory"), "-p", s.port), "alice@127.0.0.1", "true")...)
		_, errOut, code := runCmd(t, c, nil)
		if code != 255 || !strings.Contains(errOut, "Permission denied") {
			t.Errorf("wrong key: exit %d, %q; want 255 and Permission denied", code, errOut)
		}
	})
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err1 := os.ReadFile(a)
	y, err2 := os.ReadFile(b)
	if err1 != nil || err2 != nil || sha256.Sum256(x) != sha256.Sum256(y) {
		t.Errorf("%s and %s differ (%d vs %d bytes, %v %v)", a, b, len(x), len(y), err1, err2)
	}
}

// waitFile waits for a path to appear; ssh offers no event for its
// control socket.
func waitFile(t *testing.T, path string) {
	t.Helper()
	eventually(t, kubetest.Timeout, path+" appearing", func() bool {
		_, err := os.Stat(path)
		return err == nil
	})
}

// httpGetRetry GETs url until the forward is listening, bounded.
func httpGetRetry(t *testing.T, url string) string {
	t.Helper()
	var body string
	eventually(t, 30*time.Second, "GET "+url, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return true
	})
	return body
}

// withoutProgress drops the scheduler's "waiting for a pod" lines, which a
// connection that finds the pool momentarily empty rightly gets on stderr,
// and the line that tells a user of a reconnect window whether they are
// back in their pod or in a new one.
func withoutProgress(stderr string) string {
	var keep []string
	for _, l := range strings.Split(stderr, "\n") {
		if !strings.HasPrefix(l, "waiting for a pod") && !strings.HasPrefix(l, "podgate: you are ") {
			keep = append(keep, l)
		}
	}
	return strings.TrimSpace(strings.Join(keep, "\n"))
}
