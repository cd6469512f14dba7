package kube

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/scheduler"
)

// Helpers shared by the integration tests, which run against the real
// cluster kubetest finds and skip without one.

// testTimeout bounds every cluster operation in a test, so a hang (a lost
// stdin EOF, say) fails the test instead of stalling the run. It is a
// deadline, not an assertion about speed.
const testTimeout = 60 * time.Second

// testContext returns a context bounded by testTimeout and cancelled with
// the test.
func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// testLogger logs warnings to stderr: t.Log must not be used by goroutines
// that may outlive a test.
func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func newTestExecutor(t testing.TB, env *kubetest.Env, opts ...Option) *Executor {
	t.Helper()
	e, err := NewExecutor(env.Config, env.Client.CoreV1(), testLogger(), opts...)
	if err != nil {
		t.Fatalf("NewExecutor: %v", err)
	}
	return e
}

// podSpec describes a test pod: an image and the command that keeps it up.
type podSpec struct {
	image   string
	command []string
	// readyPort, if set, gets a TCP readiness probe, so Ready means the
	// port is listening.
	readyPort int32
}

// busyboxPod and debianPod are idle pods of the two guest images.
func busyboxPod() podSpec {
	return podSpec{image: kubetest.BusyboxImage, command: []string{"sleep", "3600"}}
}

func debianPod() podSpec {
	return podSpec{image: kubetest.DebianImage, command: []string{"sleep", "3600"}}
}

// startPods creates the pods in the test's namespace in parallel and waits,
// through a watch, until each is Ready. The namespace's deletion removes
// them.
func startPods(t testing.TB, env *kubetest.Env, specs ...podSpec) []scheduler.PodRef {
	t.Helper()
	ctx := testContext(t)
	refs := make([]scheduler.PodRef, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, spec := range specs {
		refs[i] = scheduler.PodRef{Namespace: env.Namespace, Name: "p-" + rand.String(6), Container: "main"}
		wg.Go(func() { errs[i] = startPod(ctx, env, refs[i], spec) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return refs
}

func startPod(ctx context.Context, env *kubetest.Env, ref scheduler.PodRef, spec podSpec) error {
	zero := int64(0)
	noToken := false
	c := corev1.Container{
		Name:            ref.Container,
		Image:           spec.image,
		ImagePullPolicy: corev1.PullNever,
		Command:         spec.command,
	}
	if spec.readyPort != 0 {
		c.ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(spec.readyPort)}},
			PeriodSeconds: 1,
		}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: ref.Namespace},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{c},
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &zero,
			AutomountServiceAccountToken:  &noToken,
		},
	}
	pods := env.Client.CoreV1().Pods(ref.Namespace)
	created, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating pod %s: %w", ref.Name, err)
	}
	w, err := pods.Watch(ctx, metav1.ListOptions{
		FieldSelector:   "metadata.name=" + ref.Name,
		ResourceVersion: created.ResourceVersion,
	})
	if err != nil {
		return fmt.Errorf("watching pod %s: %w", ref.Name, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for pod %s to be ready: %w", ref.Name, ctx.Err())
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("watch of pod %s closed", ref.Name)
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type == watch.Deleted {
				continue
			}
			if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
				return fmt.Errorf("pod %s ended: %s", ref.Name, p.Status.Phase)
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
					return nil
				}
			}
		}
	}
}

// result is what running a command produced.
type result struct {
	stdout, stderr string
	status         scheduler.ExitStatus
	err            error
}

// execCommand runs argv over a fresh exec with the given stdin.
func execCommand(ctx context.Context, e *Executor, pod scheduler.PodRef, stdin string, argv ...string) result {
	var stdout, stderr bytes.Buffer
	st, err := e.Exec(ctx, pod, scheduler.Command{
		Argv: argv, Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: &stderr,
	})
	return result{stdout.String(), stderr.String(), st, err}
}

// mustExec runs argv and fails the test unless it exits 0.
func mustExec(t *testing.T, ctx context.Context, e *Executor, pod scheduler.PodRef, argv ...string) string {
	t.Helper()
	r := execCommand(ctx, e, pod, "", argv...)
	if r.err != nil || r.status.Code != 0 {
		t.Fatalf("%q: status %+v, err %v, stderr %q", argv, r.status, r.err, r.stderr)
	}
	return r.stdout
}

// waitGone waits, inside the pod, until pid has exited (or is a zombie
// waiting to be reaped). The test's context bounds the wait.
func waitGone(t *testing.T, ctx context.Context, e *Executor, pod scheduler.PodRef, pid int) {
	t.Helper()
	mustExec(t, ctx, e, pod, "sh", "-c",
		`while [ -e /proc/$1 ] && ! grep -q '^[^)]*) Z' /proc/$1/stat 2>/dev/null; do sleep 0.05; done`, "sh", fmt.Sprint(pid))
}

// lineReader hands a command's output to the test line by line while the
// command runs.
type lineReader struct {
	w     *io.PipeWriter
	lines chan string
}

func newLineReader() *lineReader {
	r, w := io.Pipe()
	lr := &lineReader{w: w, lines: make(chan string, 16)}
	go func() {
		defer close(lr.lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lr.lines <- strings.TrimRight(sc.Text(), "\r")
		}
	}()
	return lr
}

// next returns the next line, failing the test if output ended or ctx
// expired first.
func (lr *lineReader) next(t *testing.T, ctx context.Context) string {
	t.Helper()
	select {
	case line, ok := <-lr.lines:
		if !ok {
			t.Fatal("output ended early")
		}
		return line
	case <-ctx.Done():
		t.Fatalf("waiting for output: %v", ctx.Err())
	}
	return ""
}

// runAsync runs fn in a goroutine and returns a channel for its result, so
// tests can interact with a running command and never call t.Fatal off the
// test goroutine.
func runAsync(fn func() (scheduler.ExitStatus, error)) <-chan result {
	ch := make(chan result, 1)
	go func() {
		st, err := fn()
		ch <- result{status: st, err: err}
	}()
	return ch
}

// atoi parses a PID or count a command printed.
func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("parsing %q: %v", s, err)
	}
	return n
}
