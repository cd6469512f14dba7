package localcluster_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/podgate/podgate/internal/testenv/kubetest"
)

// TestPodExec proves the cluster end to end: a pod from the Debian guest
// image is scheduled by the real scheduler, run by the real kubelet through
// containerd and runc, becomes Ready (seen through an informer), and runs
// commands over exec, with stdin, exit codes and a TTY, over WebSocket with
// SPDY as the fallback.
func TestPodExec(t *testing.T) {
	env := kubetest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), kubetest.Timeout)
	defer cancel()
	pod := kubetest.IdlePod("exec-target", kubetest.DebianImage)
	if _, err := env.Client.CoreV1().Pods(env.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	if _, err := env.WaitPodReady(ctx, pod.Name); err != nil {
		t.Fatal(err)
	}
	exec := func(t *testing.T, mk func(req *http.Request) (remotecommand.Executor, error), cmd []string, stdin string, tty bool) (string, int) {
		t.Helper()
		req := env.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(env.Namespace).
			Name(pod.Name).SubResource("exec").VersionedParams(&corev1.PodExecOptions{
			Container: "main", Command: cmd, Stdin: stdin != "", Stdout: true, Stderr: !tty, TTY: tty,
		}, scheme.ParameterCodec)
		ex, err := mk(&http.Request{Method: "POST", URL: req.URL()})
		if err != nil {
			t.Fatalf("creating executor: %v", err)
		}
		// Separate buffers: the executor writes stdout and stderr from
		// different goroutines.
		var out, errOut bytes.Buffer
		opts := remotecommand.StreamOptions{Stdout: &out, Tty: tty}
		if !tty {
			opts.Stderr = &errOut
		}
		if stdin != "" {
			opts.Stdin = strings.NewReader(stdin)
		}
		err = ex.StreamWithContext(ctx, opts)
		var code utilexec.CodeExitError
		switch {
		case err == nil:
			return out.String(), 0
		case errors.As(err, &code):
			return out.String(), code.Code
		}
		t.Fatalf("exec %v: %v", cmd, err)
		return "", -1
	}
	websocketFirst := func(r *http.Request) (remotecommand.Executor, error) {
		ws, err := remotecommand.NewWebSocketExecutor(env.Config, "GET", r.URL.String())
		if err != nil {
			return nil, err
		}
		spdy, err := remotecommand.NewSPDYExecutor(env.Config, "POST", r.URL)
		if err != nil {
			return nil, err
		}
		return remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
	}
	spdyOnly := func(r *http.Request) (remotecommand.Executor, error) {
		return remotecommand.NewSPDYExecutor(env.Config, "POST", r.URL)
	}
	for name, mk := range map[string]func(*http.Request) (remotecommand.Executor, error){
		"websocket-with-fallback": websocketFirst, "spdy": spdyOnly,
	} {
		t.Run(name, func(t *testing.T) {
			if out, code := exec(t, mk, []string{"/bin/bash", "-c", "echo $BASH_VERSION >/dev/null; id -u; exit 42"}, "", false); code != 42 || strings.TrimSpace(out) != "1000" {
				t.Errorf("exit 42 as uid 1000: got code %d, output %q", code, out)
			}
			// stdin EOF must reach the process for cat to end.
			if out, code := exec(t, mk, []string{"cat"}, "hello\n", false); code != 0 || out != "hello\n" {
				t.Errorf("cat: got code %d, output %q", code, out)
			}
			if out, code := exec(t, mk, []string{"/bin/bash", "-c", "tty"}, "", true); code != 0 || !strings.HasPrefix(out, "/dev/pts/") {
				t.Errorf("tty: got code %d, output %q", code, out)
			}
		})
	}
}
