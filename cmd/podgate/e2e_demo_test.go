package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/podgate/podgate/internal/testenv/hosttools"
	"github.com/podgate/podgate/internal/testenv/kubetest"
)

// TestMakeRunNewcomer is a newcomer's first login: `make run` in one
// terminal, then the ssh line it prints, typed in another by an account
// with no SSH key at all. The printed line and the banner must say that
// any password works, and typing one must give a shell.
//
// The run uses its own port, metrics port, namespace and state directory
// (the variables hack/run.sh honours), so a `make run` someone else has up
// is not disturbed. The client runs as the nobody account: OpenSSH looks
// for keys in the home directory of the passwd entry, not in $HOME, so an
// empty ~/.ssh needs an account whose home has none (nobody's is
// /nonexistent); HOME points at an empty directory as well.
func TestMakeRunNewcomer(t *testing.T) {
	hosttools.Require(t, "tmux", "setpriv", "make")
	env := kubetest.New(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// Directories nobody can use: the known_hosts file goes in the state
	// directory, and HOME is an empty one.
	shared, err := os.MkdirTemp("", "podgate-newcomer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	state, home := filepath.Join(shared, "state"), filepath.Join(shared, "home")
	for _, d := range []string{shared, state, home, filepath.Join(home, ".ssh")} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, 0o777)
	}
	port, metrics := freePort(t), freePort(t)

	m := tmux{t: t, session: "podgate-run-" + env.Namespace}
	// bash survives the Ctrl-C below with a trap (its children get the
	// default action back), so it can report how make ended.
	run := "trap : INT; cd " + root + " && env KUBECONFIG=" + kubetest.Kubeconfig() + " PODGATE_PORT=" + port +
		" PODGATE_METRICS_ADDR=127.0.0.1:" + metrics + " PODGATE_NAMESPACE=" + env.Namespace +
		" PODGATE_RUN_STATE=" + state + " PODGATE_REPLICA_ID=newcomer PODGATE_POOL_MIN=1 make run; echo run-exited=$?; sleep 120"
	m.cmd("new-session", "-d", "-s", m.session, "-x", "220", "-y", "50", "bash -c '"+run+"'")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("tmux", "-L", m.session, "capture-pane", "-p", "-J", "-t", m.session).Output()
			t.Logf("make run's terminal:\n%s", out)
		}
		exec.Command("tmux", "-L", m.session, "kill-server").Run()
	})

	// make builds podgate first, which can take a while on a cold cache.
	screen := m.waitScreen("Stop: Ctrl-C")
	if !strings.Contains(screen, "any user name logs in") || !strings.Contains(screen, "with any password (or any SSH key)") {
		t.Errorf("make run does not say that any password works:\n%s", screen)
	}
	line := regexp.MustCompile(`ssh -p \S+ .*@localhost`).FindString(m.cmd("capture-pane", "-p", "-J", "-t", m.session))
	if line == "" {
		t.Fatalf("no ssh line on the screen:\n%s", screen)
	}
	eventually(t, kubetest.Timeout, "podgate ready", func() bool {
		resp, err := http.Get("http://127.0.0.1:" + metrics + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// The newcomer pastes the printed line, keyless.
	c := tmux{t: t, session: "podgate-newcomer-" + env.Namespace}
	client := "setpriv --reuid=65534 --regid=65534 --clear-groups env -i HOME=" + home + " PATH=/usr/bin:/bin TERM=xterm " + line
	c.cmd("new-session", "-d", "-s", c.session, "-x", "200", "-y", "40", "sh -c '"+client+"; echo ssh-exited=$?; sleep 120'")
	t.Cleanup(func() { exec.Command("tmux", "-L", c.session, "kill-server").Run() })
	screen = c.waitScreen("password:")
	if !strings.Contains(screen, "any user name and ANY password") {
		t.Errorf("the banner above the password prompt does not say what to type:\n%s", screen)
	}
	c.cmd("send-keys", "-t", c.session, "anything at all", "Enter")
	c.waitScreen(":~$")
	c.cmd("send-keys", "-t", c.session, "echo logged-in-as-$PODGATE_USER", "Enter")
	c.waitScreen("logged-in-as-root")
	c.cmd("send-keys", "-t", c.session, "exit", "Enter")
	if screen := c.waitScreen("ssh-exited="); !strings.Contains(screen, "ssh-exited=0") {
		t.Errorf("ssh ended with:\n%s", screen)
	}

	// Ctrl-C stops podgate cleanly. The newcomer's pod went when the
	// session ended; idle pool pods stay for the next replica to adopt
	// or reap, as on any shutdown.
	pods := podLister(t, env)
	m.cmd("send-keys", "-t", m.session, "C-c")
	if screen := m.waitScreen("run-exited="); !strings.Contains(screen, `msg="podgate stopped"`) {
		t.Errorf("make run did not stop cleanly:\n%s", screen)
	}
	eventually(t, 30*time.Second, "no pod left in use", func() bool {
		left, err := pods.List(labels.Everything())
		if err != nil {
			return false
		}
		for _, p := range left {
			if p.Labels["podgate.io/state"] != "idle" {
				return false
			}
		}
		return true
	})
}
