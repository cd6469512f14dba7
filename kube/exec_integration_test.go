package kube

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/scheduler"
)

// TestExec proves fresh Exec on the real cluster over the default
// transports (SPDY without pings for plain streams, podgate's WebSocket
// client for terminals; see Executor), in both guest images.
func TestExec(t *testing.T) {
	t.Parallel()
	env := kubetest.New(t)
	e := newTestExecutor(t, env)
	pods := startPods(t, env, busyboxPod(), debianPod())
	for i, image := range []string{"busybox", "debian"} {
		t.Run(image, func(t *testing.T) { execSuite(t, e, pods[i]) })
	}
	t.Run("PodGone", func(t *testing.T) {
		r := execCommand(testContext(t), e, scheduler.PodRef{Namespace: env.Namespace, Name: "no-such-pod", Container: "main"}, "", "true")
		if !errors.Is(r.err, scheduler.ErrPodGone) {
			t.Errorf("exec in a missing pod: err = %v, want ErrPodGone", r.err)
		}
	})
	t.Run("DefaultContainer", func(t *testing.T) {
		pod := pods[0]
		pod.Container = ""
		if out := mustExec(t, testContext(t), e, pod, "echo", "ok"); out != "ok\n" {
			t.Errorf("stdout = %q", out)
		}
	})
	if e.execWSRefused.Load() {
		t.Error("executor fell back to SPDY; the cluster should speak WebSocket v5")
	}
}

// TestExecSPDYFallback runs the same checks with WebSocket disabled, which
// is the path taken when an API server or proxy cannot upgrade to it.
func TestExecSPDYFallback(t *testing.T) {
	t.Parallel()
	env := kubetest.New(t)
	e := newTestExecutor(t, env, WithSPDYOnly())
	pods := startPods(t, env, busyboxPod(), debianPod())
	for i, image := range []string{"busybox", "debian"} {
		t.Run(image, func(t *testing.T) { execSuite(t, e, pods[i]) })
	}
	t.Run("Prepared", func(t *testing.T) {
		ctx := testContext(t)
		p, err := e.Prepare(ctx, pods[0], false)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		st, err := p.Run(ctx, scheduler.Command{Argv: []string{"sh", "-c", "cat; exit 3"}, Stdin: strings.NewReader("via spdy"), Stdout: &out})
		if err != nil || st.Code != 3 || out.String() != "via spdy" {
			t.Errorf("Run = %+v, %v, stdout %q; want exit 3 and the stdin echoed", st, err, out.String())
		}
	})
	t.Run("Signal", func(t *testing.T) { checkSignal(t, e, pods[1], "TERM", false) })
}

// execSuite is what every transport and image must do.
func execSuite(t *testing.T, e *Executor, pod scheduler.PodRef) {
	t.Run("ExitCode", func(t *testing.T) {
		r := execCommand(testContext(t), e, pod, "", "sh", "-c", "exit 42")
		if r.err != nil || r.status != (scheduler.ExitStatus{Code: 42}) {
			t.Errorf("exit 42: status %+v, err %v", r.status, r.err)
		}
	})
	t.Run("CommandNotFound", func(t *testing.T) {
		r := execCommand(testContext(t), e, pod, "", "no-such-command")
		if r.err != nil || r.status.Code != 127 {
			t.Errorf("missing command: status %+v, err %v, stderr %q; want 127", r.status, r.err, r.stderr)
		}
	})
	t.Run("StdinEOF", func(t *testing.T) {
		// cat returns only if stdin's EOF reaches it.
		r := execCommand(testContext(t), e, pod, "hello\nworld", "cat")
		if r.err != nil || r.status.Code != 0 || r.stdout != "hello\nworld" {
			t.Errorf("cat: stdout %q, status %+v, err %v", r.stdout, r.status, r.err)
		}
	})
	t.Run("StderrSeparate", func(t *testing.T) {
		r := execCommand(testContext(t), e, pod, "", "sh", "-c", "echo out; echo err >&2")
		if r.err != nil || r.stdout != "out\n" || r.stderr != "err\n" {
			t.Errorf("stdout %q, stderr %q, err %v", r.stdout, r.stderr, r.err)
		}
	})
	t.Run("FiveMegabytes", func(t *testing.T) {
		const size = 5 << 20
		in, out := sha256.New(), sha256.New()
		src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{7}), size), in)
		counted := &countingWriter{w: out}
		st, err := e.Exec(testContext(t), pod, scheduler.Command{Argv: []string{"cat"}, Stdin: src, Stdout: counted, Stderr: io.Discard})
		if err != nil || st.Code != 0 {
			t.Fatalf("cat: %+v, %v", st, err)
		}
		if counted.n != size || !bytes.Equal(in.Sum(nil), out.Sum(nil)) {
			t.Errorf("got %d bytes with checksum %x, sent %d with %x", counted.n, out.Sum(nil), size, in.Sum(nil))
		}
	})
	t.Run("TTYSize", func(t *testing.T) {
		var out bytes.Buffer
		st, err := e.Exec(testContext(t), pod, scheduler.Command{
			Argv: []string{"stty", "size"}, Stdout: &out,
			Pty: &scheduler.Pty{Term: "xterm", Size: scheduler.WindowSize{Cols: 123, Rows: 45}},
		})
		if err != nil || st.Code != 0 || strings.TrimSpace(out.String()) != "45 123" {
			t.Errorf("stty size: %q, %+v, %v; want \"45 123\"", out.String(), st, err)
		}
	})
	t.Run("TTYResize", func(t *testing.T) {
		ctx := testContext(t)
		lines := newLineReader()
		resize := make(chan scheduler.WindowSize, 1)
		// The trap is set before the first size is printed, so once the
		// test has read it a resize must produce the second line.
		script := `trap 'stty size; kill $! 2>/dev/null; exit 0' WINCH; stty size; sleep 100 & wait $!; exit 9`
		done := runAsync(func() (scheduler.ExitStatus, error) {
			defer lines.w.Close()
			return e.Exec(ctx, pod, scheduler.Command{
				Argv: []string{"sh", "-c", script}, Stdout: lines.w, Resize: resize,
				Pty: &scheduler.Pty{Term: "xterm", Size: scheduler.WindowSize{Cols: 80, Rows: 24}},
			})
		})
		if got := lines.next(t, ctx); got != "24 80" {
			t.Fatalf("initial size %q, want \"24 80\"", got)
		}
		resize <- scheduler.WindowSize{Cols: 100, Rows: 30}
		if got := lines.next(t, ctx); got != "30 100" {
			t.Errorf("size after resize %q, want \"30 100\"", got)
		}
		if r := <-done; r.err != nil || r.status.Code != 0 {
			t.Errorf("command ended with %+v, %v", r.status, r.err)
		}
	})
	t.Run("ContextCancelHangsUp", func(t *testing.T) {
		ctx := testContext(t)
		runCtx, cancel := context.WithCancel(ctx)
		lines := newLineReader()
		done := runAsync(func() (scheduler.ExitStatus, error) {
			defer lines.w.Close()
			return e.Exec(runCtx, pod, scheduler.Command{Argv: []string{"sh", "-c", "echo $$; exec sleep 100"}, Stdout: lines.w})
		})
		pid := lines.next(t, ctx)
		cancel()
		if r := <-done; !errors.Is(r.err, context.Canceled) {
			t.Errorf("Exec after cancel: %+v, %v; want context.Canceled", r.status, r.err)
		}
		waitGone(t, ctx, e, pod, atoi(t, pid))
	})
}

// countingWriter counts what it passes on.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
