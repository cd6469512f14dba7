package kube

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/creack/pty"

	"github.com/podgate/podgate/scheduler"
)

// runOnTerminal runs the terminal wrapper under shell with a real pty as its
// terminal, in the pty's normal (cooked) mode as a runtime creates it,
// sends the hello and the spec for argv and env, and decodes the helper's
// report from the output that follows the go line.
func runOnTerminal(t *testing.T, shell []string, args []string, env map[string]string) helperReport {
	t.Helper()
	argv, fullEnv := helperCommand(t, args, env)
	fullEnv[helperNoStdinEnv] = "1"
	cmd := exec.Command(shell[0], append(append([]string(nil), shell[1:]...), wrapperArgv(true)[1:]...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	term, err := pty.Start(cmd)
	if err != nil {
		t.Fatalf("starting the wrapper on a pty: %v", err)
	}
	defer term.Close()
	out := &markerWriter{out: &gate{}, ready: make(chan struct{}), started: make(chan struct{})}
	var report bytes.Buffer
	out.out.attach(&report)
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(out, term)
		if errors.Is(err, os.ErrClosed) || isEIO(err) {
			err = nil // the slave side closed: the command has ended
		}
		copied <- err
	}()
	if _, err := term.Write([]byte(helloLine)); err != nil {
		t.Fatal(err)
	}
	<-out.ready
	if out.readyTerm() == nil {
		t.Fatalf("%v: the ready line carried no terminal settings (noise %q)", shell, out.noiseString())
	}
	spec, err := encodeSpec(argv, fullEnv, &scheduler.Pty{Term: "xterm"}, out.readyTerm())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := term.Write(spec); err != nil {
		t.Fatal(err)
	}
	werr := cmd.Wait()
	if err := <-copied; err != nil {
		t.Fatalf("%v: reading the terminal: %v", shell, err)
	}
	if werr != nil {
		t.Fatalf("%v: wrapper: %v; output %q", shell, werr, report.String())
	}
	var r helperReport
	if err := json.Unmarshal(report.Bytes(), &r); err != nil {
		t.Fatalf("%v: decoding the report %q: %v", shell, report.String(), err)
	}
	return r
}

func isEIO(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "input/output error")
}

// TestSpecRoundTripOnTerminal: on a terminal in its normal mode, whose line
// discipline acts on ^C, ^U, ^S, DEL and the like and holds at most 4095
// bytes a line, every argument and value still reaches the command exactly,
// no control byte interrupts the wrapper or stops the output (the values
// here make the spec longer than the line discipline's buffer, so its
// flow-control lookahead runs), and the echo of the spec never reaches the
// command's output.
func TestSpecRoundTripOnTerminal(t *testing.T) {
	nasty := []string{
		"", "'; echo pwned #", `"double" \back\slash`, "$(id) `id` ${HOME}",
		"line1\nline2\n", "\x03\x04\x1a\x1c\x15\x17\x12\x16\x0f\x11\x13\x7f", "\r\n\r", "\t tab",
		"\xff\xfe invalid utf-8 \x80", strings.Repeat("x", 10000), "\x1fPODGATE-GO\n",
	}
	env := map[string]string{}
	for i, v := range nasty {
		env["NASTY_"+string(rune('A'+i))] = v
	}
	for name, shell := range localShells(t) {
		r := runOnTerminal(t, shell, nasty, env)
		if len(r.Args) != len(nasty)+1 {
			t.Fatalf("%s: command got %d args, want %d", name, len(r.Args), len(nasty)+1)
		}
		for i, want := range nasty {
			if got := string(r.Args[i+1]); got != want {
				t.Errorf("%s: arg %d = %q, want %q", name, i, got, want)
			}
		}
		for k, v := range env {
			if got := string(r.Env[k]); got != v {
				t.Errorf("%s: env %s = %q, want %q", name, k, got, v)
			}
		}
	}
}
