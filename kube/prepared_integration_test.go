package kube

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/scheduler"
)

// nastyArgs are arguments that break naive quoting or framing.
func nastyArgs() []string {
	return []string{
		"'; echo pwned #",
		"line1\nline2\n",
		"$(id) `id` ${HOME}",
		"\x03\x04\x1a",
		`it's "quoted" \ back\slash`,
		"\xff\xfe\xc3\n",
		"PODGATE-READY 1\n1\nexit 0\n",
		"",
	}
}

// hexArgsScript prints each argument as hex on a line of its own, then
// $NASTY as hex on stderr, then TERM, so arbitrary bytes survive any
// terminal processing and can be compared exactly.
const hexArgsScript = `for a; do printf '%s' "$a" | od -An -tx1 | tr -d ' \n'; echo; done
printf '%s' "$NASTY" | od -An -tx1 | tr -d ' \n' >&2
echo "TERM=$TERM"
exit 5`

// wantHexLines is what hexArgsScript prints for args on stdout.
func wantHexLines(args []string, term string) string {
	var b strings.Builder
	for _, a := range args {
		b.WriteString(hex.EncodeToString([]byte(a)) + "\n")
	}
	return b.String() + "TERM=" + term + "\n"
}

func prepare(t *testing.T, ctx context.Context, e *Executor, pod scheduler.PodRef, tty bool) *execStream {
	t.Helper()
	p, err := e.Prepare(ctx, pod, tty)
	if err != nil {
		t.Fatalf("Prepare(tty=%t): %v", tty, err)
	}
	t.Cleanup(func() { p.Close() })
	if p.TTY() != tty {
		t.Errorf("TTY() = %t, want %t", p.TTY(), tty)
	}
	return p.(*execStream)
}

// TestPrepared proves prepared streams on the real cluster, in both images.
func TestPrepared(t *testing.T) {
	t.Parallel()
	env := kubetest.New(t)
	e := newTestExecutor(t, env)
	pods := startPods(t, env, busyboxPod(), debianPod())
	for i, image := range []string{"busybox", "debian"} {
		t.Run(image, func(t *testing.T) { preparedSuite(t, e, pods[i]) })
	}
}

func preparedSuite(t *testing.T, e *Executor, pod scheduler.PodRef) {
	t.Run("PlainNastyArgs", func(t *testing.T) {
		ctx := testContext(t)
		p := prepare(t, ctx, e, pod, false)
		args := nastyArgs()
		var stdout, stderr bytes.Buffer
		st, err := p.Run(ctx, scheduler.Command{
			Argv:   append([]string{"sh", "-c", hexArgsScript, "sh"}, args...),
			Env:    map[string]string{"NASTY": args[0] + args[1] + args[3]},
			Stdout: &stdout, Stderr: &stderr,
		})
		if err != nil || st.Code != 5 {
			t.Fatalf("Run: %+v, %v; stderr %q", st, err, stderr.String())
		}
		if want := wantHexLines(args, ""); stdout.String() != want {
			t.Errorf("stdout (marker or spec must not leak):\n%q\nwant\n%q", stdout.String(), want)
		}
		if want := hex.EncodeToString([]byte(args[0] + args[1] + args[3])); stderr.String() != want {
			t.Errorf("env via stderr = %q, want %q", stderr.String(), want)
		}
	})
	t.Run("TTYNastyArgs", func(t *testing.T) {
		ctx := testContext(t)
		p := prepare(t, ctx, e, pod, true)
		args := nastyArgs()
		var out bytes.Buffer
		st, err := p.Run(ctx, scheduler.Command{
			Argv:   append([]string{"sh", "-c", hexArgsScript, "sh"}, args...),
			Env:    map[string]string{"NASTY": "x"},
			Stdout: &out,
			Pty:    &scheduler.Pty{Term: "xterm-256color", Size: scheduler.WindowSize{Cols: 200, Rows: 50}},
		})
		if err != nil || st.Code != 5 {
			t.Fatalf("Run: %+v, %v; output %q", st, err, out.String())
		}
		// A terminal merges stderr and maps NL to CRNL.
		got := strings.ReplaceAll(out.String(), "\r\n", "\n")
		want := wantHexLines(args, "xterm-256color")
		want = strings.Replace(want, "TERM=", "78TERM=", 1)
		if got != want {
			t.Errorf("output (marker or spec must not leak):\n%q\nwant\n%q", got, want)
		}
	})
	t.Run("TTYRawBytesAndModes", func(t *testing.T) {
		ctx := testContext(t)
		p := prepare(t, ctx, e, pod, true)
		arg := "a\nb'\x03c$(id)\x1b[0m\xff"
		var out bytes.Buffer
		st, err := p.Run(ctx, scheduler.Command{
			Argv:   []string{"sh", "-c", `printf '%s' "$1"; stty -a | tr '\n' ' ' >&2`, "sh", arg},
			Stdout: &out,
			Pty: &scheduler.Pty{Term: "dumb", Size: scheduler.WindowSize{Cols: 80, Rows: 24},
				Modes: map[uint8]uint32{ssh.OPOST: 0, ssh.ECHO: 0, ssh.VINTR: 0x18, ssh.VEOF: 255}},
		})
		if err != nil || st.Code != 0 {
			t.Fatalf("Run: %+v, %v; output %q", st, err, out.String())
		}
		got, settings, _ := strings.Cut(out.String(), "speed")
		if got != arg {
			t.Errorf("printf through the terminal = %q, want %q byte for byte", got, arg)
		}
		for _, want := range []string{"-opost", "-echo ", "intr = ^X", "eof = <undef>", "rows 24", "columns 80"} {
			if !strings.Contains(settings, want) {
				t.Errorf("stty -a lacks %q: %q", want, settings)
			}
		}
	})
	t.Run("StdinAndExitCode", func(t *testing.T) {
		ctx := testContext(t)
		p := prepare(t, ctx, e, pod, false)
		var out bytes.Buffer
		st, err := p.Run(ctx, scheduler.Command{Argv: []string{"sh", "-c", "cat; exit 7"}, Stdin: strings.NewReader("spliced\x00stdin"), Stdout: &out})
		if err != nil || st.Code != 7 || out.String() != "spliced\x00stdin" {
			t.Errorf("Run = %+v, %v, stdout %q", st, err, out.String())
		}
		if _, err := p.Run(ctx, scheduler.Command{Argv: []string{"true"}}); err == nil {
			t.Error("a second Run on the same stream succeeded")
		}
	})
	t.Run("CloseLeavesNoProcess", func(t *testing.T) {
		ctx := testContext(t)
		for _, tty := range []bool{false, true} {
			p := prepare(t, ctx, e, pod, tty)
			pid := p.stdout.readyPID()
			if pid <= 0 {
				t.Fatalf("no PID from the ready line")
			}
			if err := p.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			// Close returns once the exec has ended, i.e. the runtime has
			// reaped the wrapper, so its PID must be gone now.
			r := execCommand(ctx, e, pod, "", "sh", "-c", `test -e /proc/$1`, "sh", fmt.Sprint(pid))
			if r.err != nil || r.status.Code != 1 {
				t.Errorf("tty=%t: wrapper %d still present after Close (status %+v, err %v)", tty, pid, r.status, r.err)
			}
		}
	})
	t.Run("SignalINT", func(t *testing.T) { checkSignal(t, e, pod, "INT", false) })
	t.Run("SignalTERM", func(t *testing.T) { checkSignal(t, e, pod, "TERM", true) })
	t.Run("DeadIdleStreamFallsBack", func(t *testing.T) {
		ctx := testContext(t)
		p := prepare(t, ctx, e, pod, false)
		p.conn.abort() // as if the kubelet had dropped the idle stream
		<-p.done
		var out bytes.Buffer
		st, err := p.Run(ctx, scheduler.Command{Argv: []string{"echo", "fresh"}, Stdout: &out})
		if err != nil || st.Code != 0 || out.String() != "fresh\n" {
			t.Errorf("Run on a dead stream = %+v, %v, %q; want a transparent fresh exec", st, err, out.String())
		}
	})
	t.Run("Rejects", func(t *testing.T) {
		ctx := testContext(t)
		p := prepare(t, ctx, e, pod, false)
		_, err := p.Run(ctx, scheduler.Command{Argv: []string{"true"}, Pty: &scheduler.Pty{}})
		if !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("Run with a pty on a plain stream: %v", err)
		}
		_, err = p.Run(ctx, scheduler.Command{Argv: []string{"echo", "nul\x00"}})
		if !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("Run with NUL: %v", err)
		}
		// The rejected spec closed the stream: the wrapper has exited.
		select {
		case <-p.done:
		default:
			t.Error("stream still open after a rejected command")
		}
	})
}

// checkSignal runs sleep on a prepared stream and requires a signal sent
// through Command.Signals to end it, reported as that signal.
func checkSignal(t *testing.T, e *Executor, pod scheduler.PodRef, signal string, tty bool) {
	ctx := testContext(t)
	p := prepare(t, ctx, e, pod, tty)
	lines := newLineReader()
	signals := make(chan string, 2)
	cmd := scheduler.Command{Argv: []string{"sh", "-c", "echo started; exec sleep 100"}, Stdout: lines.w, Signals: signals}
	if tty {
		cmd.Pty = &scheduler.Pty{Term: "xterm", Size: scheduler.WindowSize{Cols: 80, Rows: 24}}
	}
	done := runAsync(func() (scheduler.ExitStatus, error) {
		defer lines.w.Close()
		return p.Run(ctx, cmd)
	})
	if got := lines.next(t, ctx); got != "started" {
		t.Fatalf("first line %q", got)
	}
	signals <- "BOGUS" // not in the fixed list: dropped
	signals <- signal
	r := <-done
	want := scheduler.ExitStatus{Code: 128 + signalNumber(signal), Signal: signal}
	if r.err != nil || r.status != want {
		t.Errorf("Run = %+v, %v; want %+v", r.status, r.err, want)
	}
}
