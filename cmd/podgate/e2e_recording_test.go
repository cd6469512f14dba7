package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podgate/podgate/internal/testenv/hosttools"
	"github.com/podgate/podgate/internal/testenv/kubetest"
)

// castEvents reads a cast and checks it against the asciicast v2
// specification (https://docs.asciinema.org/manual/asciicast/v2/): a
// header object with version 2 and integer width, height and timestamp,
// then events that are three-element arrays of a time that never
// decreases, a code among o, i, r and m, and a string. It returns the
// data of each code, concatenated.
func castEvents(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1)
	sc.Scan()
	var h struct {
		Version, Width, Height int
		Timestamp              int64
	}
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Version != 2 || h.Width <= 0 || h.Height <= 0 || h.Timestamp <= 0 {
		t.Fatalf("header %q: %+v, %v", sc.Text(), h, err)
	}
	by := map[string]string{}
	last := 0.0
	for n := 2; sc.Scan(); n++ {
		var ev [3]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %d %q: %v", n, sc.Text(), err)
		}
		ts, ok1 := ev[0].(float64)
		code, ok2 := ev[1].(string)
		text, ok3 := ev[2].(string)
		if !ok1 || !ok2 || !ok3 || ts < last || !strings.Contains("oirm", code) || len(code) != 1 {
			t.Fatalf("line %d %q is not [time >= %f, code, data]", n, sc.Text(), last)
		}
		last = ts
		by[code] += text
	}
	return by
}

// TestSessionRecording records a terminal session with input, drives it
// through tmux as a person would, including a password typed at a prompt
// with echo off, then checks the cast against the asciicast v2 spec,
// checks that the password is nowhere in it, and plays it with the real
// asciinema player.
func TestSessionRecording(t *testing.T) {
	hosttools.Require(t, "tmux", "asciinema")
	env := kubetest.New(t)
	records := t.TempDir()
	s := startPodgate(t, env, "PODGATE_RECORD=input", "PODGATE_RECORD_DIR="+records)
	m := tmux{t: t, session: "podgate-rec-" + env.Namespace}
	status := filepath.Join(t.TempDir(), "status")
	sshLine := "ssh -tt " + strings.Join(s.sshArgs(s.key, "-p", s.port), " ") + " alice@127.0.0.1"
	m.cmd("new-session", "-d", "-s", m.session, "-x", "100", "-y", "30",
		"sh -c '"+sshLine+"; echo status=$? > "+status+"; sleep 60'")
	t.Cleanup(func() { exec.Command("tmux", "-L", m.session, "kill-server").Run() })

	m.waitScreen(":~$")
	m.cmd("send-keys", "-t", m.session, "echo hello-$((6*7))", "Enter")
	m.waitScreen("hello-42")
	m.cmd("send-keys", "-t", m.session, `read -s -p "secret: " pw; echo "got ${#pw} chars"`, "Enter")
	m.waitScreen("secret:")
	const password = "hunter2-very-secret"
	m.cmd("send-keys", "-t", m.session, password, "Enter")
	m.waitScreen("got 19 chars")
	m.cmd("resize-window", "-t", m.session, "-x", "120", "-y", "40")
	m.cmd("send-keys", "-t", m.session, "clear; stty size", "Enter")
	m.waitScreen("40 120")
	m.cmd("send-keys", "-t", m.session, "exit", "Enter")
	eventually(t, kubetest.Timeout, "ssh ending", func() bool {
		b, _ := os.ReadFile(status)
		return len(b) > 0
	})

	// The audit line names the recording; the session has ended, so its
	// line has been written.
	var cast string
	eventually(t, kubetest.Timeout, "the session's audit line", func() bool {
		audit, _ := os.ReadFile(s.AuditLog)
		for _, l := range strings.Split(string(audit), "\n") {
			var a struct {
				Msg       string `json:"msg"`
				Recording string `json:"recording"`
			}
			if json.Unmarshal([]byte(l), &a) == nil && a.Msg == "session" && a.Recording != "" {
				cast = a.Recording
			}
		}
		return cast != ""
	})
	if filepath.Dir(cast) != records {
		t.Errorf("recording %s is not in %s", cast, records)
	}
	raw, _ := os.ReadFile(cast)
	if bytes.Contains(raw, []byte(password)) || bytes.Contains(raw, []byte("hunter2")) {
		t.Errorf("the password typed with echo off is in the recording %s", cast)
	}
	ev := castEvents(t, cast)
	if !strings.Contains(ev["o"], "hello-42") || !strings.Contains(ev["o"], "got 19 chars") {
		t.Errorf("output events lack the session's output: %q", ev["o"])
	}
	if !strings.Contains(ev["i"], "echo hello-$((6*7))") || !strings.Contains(ev["i"], "exit") {
		t.Errorf("input events lack the echoed commands: %q", ev["i"])
	}
	if !strings.Contains(ev["r"], "120x40") {
		t.Errorf("resize events %q lack 120x40", ev["r"])
	}

	// The real player plays it (it needs a terminal: a tmux window).
	p := tmux{t: t, session: "podgate-play-" + env.Namespace}
	p.cmd("new-session", "-d", "-s", p.session, "-x", "120", "-y", "40", "sh -c 'asciinema play -i 0.2 "+cast+"; echo played=$?; sleep 60'")
	t.Cleanup(func() { exec.Command("tmux", "-L", p.session, "kill-server").Run() })
	screen := p.waitScreen("played=")
	if !strings.Contains(screen, "played=0") || !strings.Contains(screen, "40 120") {
		t.Errorf("asciinema play ended with screen:\n%s", screen)
	}
}
