package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podgate/podgate/internal/testenv/hosttools"
	"github.com/podgate/podgate/internal/testenv/kubetest"
)

// tmux drives an interactive ssh -tt in a real terminal, as a person would.
type tmux struct {
	t       *testing.T
	session string
}

func (m tmux) cmd(args ...string) string {
	m.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", m.session}, args...)...).CombinedOutput()
	if err != nil {
		m.t.Fatalf("tmux %v: %v: %s", args, err, out)
	}
	return string(out)
}

// waitScreen waits until the pane shows want; a terminal offers no event
// to wait on but its screen.
func (m tmux) waitScreen(want string) string {
	m.t.Helper()
	var screen string
	eventually(m.t, kubetest.Timeout, fmt.Sprintf("the screen showing %q", want), func() bool {
		screen = m.cmd("capture-pane", "-p", "-t", m.session)
		return strings.Contains(screen, want)
	})
	return screen
}

// TestOpenSSHTerminal: `ssh -tt` in tmux gets a prompt, `stty size` follows
// a resize of the pane, ^C interrupts `sleep 100`, and `exit 3` ends the
// session with status 3.
func TestOpenSSHTerminal(t *testing.T) {
	env := kubetest.New(t)
	hosttools.Require(t, "tmux", "sh")
	s := startPodgate(t, env)
	m := tmux{t: t, session: "podgate-e2e-" + env.Namespace}
	status := filepath.Join(t.TempDir(), "status")
	sshLine := "ssh -tt " + strings.Join(s.sshArgs(s.key, "-p", s.port), " ") + " alice@127.0.0.1"
	m.cmd("new-session", "-d", "-s", m.session, "-x", "100", "-y", "30",
		"sh -c '"+sshLine+"; echo status=$? > "+status+"; sleep 60'")
	t.Cleanup(func() { exec.Command("tmux", "-L", m.session, "kill-server").Run() })

	m.waitScreen(":~$") // capture-pane trims the space after the prompt
	m.cmd("send-keys", "-t", m.session, "stty size", "Enter")
	m.waitScreen("30 100")
	m.cmd("resize-window", "-t", m.session, "-x", "120", "-y", "40")
	m.cmd("send-keys", "-t", m.session, "clear; stty size", "Enter")
	m.waitScreen("40 120")
	// Bash abandons the rest of a command line interrupted by ^C, as on any
	// host, so the status is read at the next prompt.
	m.cmd("send-keys", "-t", m.session, "clear; sleep 100", "Enter")
	time.Sleep(500 * time.Millisecond) // let sleep start before the interrupt
	m.cmd("send-keys", "-t", m.session, "C-c")
	m.waitScreen("^C")
	m.cmd("send-keys", "-t", m.session, "echo sleep-ended=$?", "Enter")
	m.waitScreen("sleep-ended=130")
	m.cmd("send-keys", "-t", m.session, "exit 3", "Enter")
	var got string
	eventually(t, kubetest.Timeout, "ssh -tt ending after exit 3", func() bool {
		b, _ := os.ReadFile(status)
		got = strings.TrimSpace(string(b))
		return got != ""
	})
	if got != "status=3" {
		t.Errorf("ssh -tt ended with %s, want status=3", got)
	}
}
