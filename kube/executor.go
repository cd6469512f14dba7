package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/podgate/podgate/scheduler"
)

// PodClient is the part of the CoreV1 client the executor uses: pod reads to
// resolve a default container and to tell a vanished pod from a failed
// stream, and the REST client to build pods/exec and pods/portforward URLs.
// kubernetes.Interface's CoreV1() satisfies it.
type PodClient interface {
	corev1client.PodsGetter
	// EventsGetter reads why a pod that is already gone was evicted.
	corev1client.EventsGetter
	RESTClient() rest.Interface
}

var (
	_ PodClient          = corev1client.CoreV1Interface(nil)
	_ scheduler.Execer   = (*Executor)(nil)
	_ scheduler.Prepared = (*execStream)(nil)
)

const (
	// closeTimeout bounds how long Close waits for an unused wrapper to
	// exit before it tears the connection down anyway.
	closeTimeout = 5 * time.Second
	// signalTimeout bounds one signal-delivery exec, including the SIGHUP
	// Run sends when its context ends (so a cancelled session cannot hold
	// up shutdown for long).
	signalTimeout = 10 * time.Second
	// probeTimeout bounds the pod read that classifies a failed stream.
	probeTimeout = 5 * time.Second
)

// Executor runs commands in pods over the API server's pods/exec endpoint
// and opens TCP streams over pods/portforward. Every command, prepared or
// fresh, runs under the wrapper in wrapper.go.
//
// Which transport a command's stream takes (see openExec):
//   - a plain stream (no terminal: ssh host cmd, sftp, scp) takes
//     podgate's own SPDY client (spdyexec.go), which never pings and, idle,
//     holds one goroutine and about 25 KiB (client-go's held 19 goroutines
//     and 989 KiB). Over WebSocket it would lose the tail of a
//     large output: the API server translates a WebSocket exec into a SPDY
//     one to the kubelet and pings that every 5 s, and a ping that meets
//     the kubelet's already closed socket resets it (see spdyquiet.go);
//     measured on the local cluster, 7 of 8 execs writing 20 MB to a 3 MB/s
//     reader lost between 0.5 and 6 MB and still reported exit 0. Over SPDY
//     end to end the proxies only relay, and podgate sends nothing after
//     stdin's close;
//   - a terminal stream takes podgate's own WebSocket client (wsconn.go),
//     client-go's SPDY executor without pings (spdyquiet.go, spdyconn.go)
//     being the fallback. The same tail loss can hit a
//     terminal whose command ends while output is still queued (ssh -t host
//     cat big); an interactive shell's end has next to none queued.
//
// An Executor is safe for concurrent use. cmd builds one per process, from
// the single shared *rest.Config (see RESTConfig).
type Executor struct {
	cfg      *rest.Config
	pods     PodClient
	log      *slog.Logger
	spdyOnly bool
	// ws opens podgate's own exec WebSockets; see wsconn.go.
	ws *wsDialer
	// spdy builds SPDY executors that send no pings; see spdyquiet.go.
	spdy *quietSPDY

	// execWSRefused and forwardWSRefused are set once the API server
	// answered a WebSocket upgrade for exec or port forwarding in a way that
	// shows it cannot speak it (not with an API Status, which would be about
	// the request); later streams then go straight to SPDY instead of paying
	// a failed upgrade each time. They are separate because the two
	// WebSocket paths are separate API server features.
	execWSRefused    atomic.Bool
	forwardWSRefused atomic.Bool

	// newStream, when set, replaces remoteExecutor; tests use it to stand
	// in for the API server.
	newStream func(pod scheduler.PodRef, argv []string, tty, stdin bool) (remotecommand.Executor, error)
}

// Option configures an Executor.
type Option func(*Executor)

// WithSPDYOnly disables the WebSocket transport, for API servers or proxies
// that mishandle it and for testing the fallback path.
func WithSPDYOnly() Option {
	return func(e *Executor) { e.spdyOnly = true }
}

// NewExecutor returns an Executor that talks to the cluster cfg describes.
// cfg must be the process's shared config; pods is usually
// clientset.CoreV1().
func NewExecutor(cfg *rest.Config, pods PodClient, log *slog.Logger, opts ...Option) (*Executor, error) {
	if cfg == nil || pods == nil {
		return nil, errors.New("creating executor: rest config and pod client are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Build one set of transports up front so a bad TLS setup fails here,
	// at startup, rather than on the first user's session.
	quiet, err := newQuietSPDY(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating executor: %w", err)
	}
	ws, err := newWSDialer(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating executor: %w", err)
	}
	e := &Executor{cfg: cfg, pods: pods, log: log, ws: ws, spdy: quiet}
	for _, o := range opts {
		o(e)
	}
	return e, nil
}

// Prepare opens an exec stream whose wrapper waits for a command, and
// returns once the wrapper has said it is ready, so the stream is known to
// be open. The stream outlives ctx, which bounds only the preparation.
//
// An idle prepared stream costs one API server connection and one sh
// process in the pod. The kubelet drops streams idle longer than its
// streaming-connection-idle-timeout (4h by default); Run on such a stream
// falls back to a fresh exec, so a pool only loses the latency benefit.
func (e *Executor) Prepare(ctx context.Context, pod scheduler.PodRef, tty bool) (scheduler.Prepared, error) {
	s, err := e.start(ctx, pod, tty, true)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Exec runs cmd over a fresh exec stream, through the same wrapper as a
// prepared one, so signals and exit statuses behave identically. Without a
// terminal the spec is sent without waiting for the wrapper's ready line,
// saving a round trip; with one it must wait, because the spec depends on
// the terminal's settings, which the ready line reports.
func (e *Executor) Exec(ctx context.Context, pod scheduler.PodRef, cmd scheduler.Command) (scheduler.ExitStatus, error) {
	spec, err := encodeSpec(cmd.Argv, cmd.Env, cmd.Pty, nil)
	if err != nil {
		return scheduler.ExitStatus{}, fmt.Errorf("exec in pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	tty := cmd.Pty != nil
	s, err := e.start(ctx, pod, tty, tty)
	if err != nil {
		return scheduler.ExitStatus{}, err
	}
	s.claim()
	if tty {
		if spec, err = encodeSpec(cmd.Argv, cmd.Env, cmd.Pty, s.stdout.readyTerm()); err != nil {
			s.shutdown()
			return scheduler.ExitStatus{}, fmt.Errorf("exec in pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
	}
	return s.run(ctx, cmd, spec)
}

// openExec opens the exec connection that runs argv: for a terminal,
// podgate's own WebSocket client (wsconn.go), or SPDY once the API server
// has shown it cannot speak WebSocket exec (see shouldFallback); for a
// plain stream, SPDY (see Executor for why) over podgate's own SPDY
// client (spdyexec.go), which never pings. The connection outlives ctx,
// which bounds only its opening.
func (e *Executor) openExec(ctx context.Context, pod scheduler.PodRef, argv []string, tty bool) (execConn, error) {
	if e.newStream != nil {
		ex, err := e.newStream(pod, argv, tty, true)
		if err != nil {
			return nil, err
		}
		return newSPDYConn(ex, tty), nil
	}
	u := e.execURL(pod, argv, tty, true)
	if tty && !e.spdyOnly && !e.execWSRefused.Load() {
		c, err := e.ws.dial(ctx, u)
		if err == nil {
			return c, nil
		}
		if !e.shouldFallback(err, &e.execWSRefused, "exec") {
			return nil, err
		}
	}
	if !tty {
		return e.spdy.dial(ctx, u, false)
	}
	// A terminal's SPDY fallback stays on client-go for now: over
	// podgate's own client the first resize was once seen to reach the
	// runtime after the command had read the terminal's size (TTYResize).
	spdy, err := e.spdy.executor(u)
	if err != nil {
		return nil, err
	}
	return newSPDYConn(spdy, tty), nil
}

// execURL is the pods/exec URL for argv.
func (e *Executor) execURL(pod scheduler.PodRef, argv []string, tty, stdin bool) *url.URL {
	return e.pods.RESTClient().Post().
		Namespace(pod.Namespace).Resource("pods").Name(pod.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: pod.Container,
			Command:   argv,
			Stdin:     stdin,
			Stdout:    true,
			Stderr:    !tty,
			TTY:       tty,
		}, scheme.ParameterCodec).URL()
}

// remoteExecutor builds a client-go executor for one short exec of argv,
// such as a signal's delivery. A new one is needed per stream: the
// WebSocket executor keeps per-connection state and must not be reused.
// stdin must match whether the caller passes a Stdin in its StreamOptions:
// over SPDY the kubelet waits for every stream the request announced.
func (e *Executor) remoteExecutor(pod scheduler.PodRef, argv []string, tty, stdin bool) (remotecommand.Executor, error) {
	if e.newStream != nil {
		return e.newStream(pod, argv, tty, stdin)
	}
	u := e.execURL(pod, argv, tty, stdin)
	spdyExec, err := e.spdy.executor(u)
	if err != nil {
		return nil, err
	}
	if e.spdyOnly || e.execWSRefused.Load() {
		return spdyExec, nil
	}
	wsExec, err := remotecommand.NewWebSocketExecutor(e.cfg, "GET", u.String())
	if err != nil {
		return nil, fmt.Errorf("creating WebSocket executor: %w", err)
	}
	return remotecommand.NewFallbackExecutor(wsExec, spdyExec, func(err error) bool {
		return e.shouldFallback(err, &e.execWSRefused, "exec")
	})
}

// shouldFallback reports whether a failed WebSocket attempt should be
// retried over SPDY: only when the upgrade itself failed and the server did
// not answer with an API Status. A Status (pod not found, forbidden,
// container not running) is an answer about the request, which SPDY would
// only repeat. On fallback it sets refused, so later streams skip the
// WebSocket attempt.
func (e *Executor) shouldFallback(err error, refused *atomic.Bool, what string) bool {
	if !httpstream.IsHTTPSProxyError(err) {
		var upgrade *httpstream.UpgradeFailureError
		if !errors.As(err, &upgrade) {
			return false
		}
		var status *apierrors.StatusError
		if errors.As(upgrade.Cause, &status) {
			return false
		}
	}
	if !refused.Swap(true) {
		e.log.Info("WebSocket upgrade failed; using SPDY from now on", "stream", what, "err", err)
	}
	return true
}

// resolveContainer fills in the pod's first container when the reference
// names none. The API server only defaults the container for single-
// container pods, so podgate resolves it itself; callers that know the
// name should set it and save this read.
func (e *Executor) resolveContainer(ctx context.Context, pod scheduler.PodRef) (scheduler.PodRef, error) {
	if pod.Container != "" {
		return pod, nil
	}
	p, err := e.pods.Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return pod, fmt.Errorf("resolving container of pod %s/%s: %w: %w", pod.Namespace, pod.Name, scheduler.ErrPodGone, err)
	}
	if err != nil {
		return pod, fmt.Errorf("resolving container of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if len(p.Spec.Containers) == 0 {
		return pod, fmt.Errorf("resolving container of pod %s/%s: pod has no containers", pod.Namespace, pod.Name)
	}
	pod.Container = p.Spec.Containers[0].Name
	return pod, nil
}

// streamError wraps a stream failure, adding scheduler.ErrPodGone when the
// pod or its container is no longer running. The stream's own error does
// not say so reliably (it may be an upgrade failure, a reset connection or
// a kubelet message), so the pod is read to decide.
//
// When the pod cannot be read either, the stream most likely broke because
// the API server that proxies it went away (a stream cannot outlive the
// API server process it runs through), so scheduler.ErrClusterUnavailable
// is added and the user is told the cluster is unavailable rather than
// given an internal error.
//
// running says the stream broke while the user's command ran, which is
// how a kill under it can look: the pod is then watched briefly for the
// status that says so (see podEnd).
func (e *Executor) streamError(pod scheduler.PodRef, op string, running bool, err error) error {
	gone, why, readErr := e.podEnd(pod, running)
	if gone {
		return podGoneError(pod, op, why, err)
	}
	if readErr != nil {
		return fmt.Errorf("%s in pod %s/%s: %w (reading the pod: %v): %w", op, pod.Namespace, pod.Name, err, readErr, scheduler.ErrClusterUnavailable)
	}
	return fmt.Errorf("%s in pod %s/%s: %w", op, pod.Namespace, pod.Name, err)
}

// exitStatus turns a finished stream's result into an exit status.
//
// The runtime reports a command killed by signal N as exit code 128+N, the
// same code a command can exit with on purpose, so the code alone cannot
// tell them apart. The rule: Signal is set only when podgate itself
// delivered signal N to this command (sent); otherwise the code is reported
// as is. A code above 128 that podgate does not explain may mean the pod was
// killed under the command, so the pod is checked and ErrPodGone returned
// alongside the status when it is gone.
func (e *Executor) exitStatus(pod scheduler.PodRef, result error, sent map[int]bool) (scheduler.ExitStatus, error) {
	if result == nil {
		return scheduler.ExitStatus{}, nil
	}
	var exitErr utilexec.ExitError
	if !errors.As(result, &exitErr) {
		return scheduler.ExitStatus{}, e.streamError(pod, "running command", true, result)
	}
	st := scheduler.ExitStatus{Code: exitErr.ExitStatus()}
	if st.Code <= 128 {
		return st, nil
	}
	if n := st.Code - 128; sent[n] {
		st.Signal = signalName(n)
		return st, nil
	}
	if gone, why, _ := e.podEnd(pod, true); gone {
		return st, podGoneError(pod, "running command", why, fmt.Errorf("exit code %d", st.Code))
	}
	return st, nil
}

// signal delivers the named signal to pid in the pod with a short exec of
// the shell's kill builtin.
func (e *Executor) signal(ctx context.Context, pod scheduler.PodRef, name string, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, signalTimeout)
	defer cancel()
	ex, err := e.remoteExecutor(pod, killArgv(name, pid), false, false)
	if err != nil {
		return fmt.Errorf("delivering SIG%s: %w", name, err)
	}
	// Two buffers: client-go copies stdout and stderr concurrently.
	var stdout, stderr limitedBuffer
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		return fmt.Errorf("delivering SIG%s to pid %d: %w (output %q)", name, pid, err, stdout.String()+stderr.String())
	}
	return nil
}

// signalName is the inverse of signalNumber.
func signalName(n int) string {
	for _, name := range []string{"HUP", "INT", "QUIT", "ILL", "ABRT", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE", "ALRM", "TERM"} {
		if signalNumber(name) == n {
			return name
		}
	}
	return ""
}

// limitedBuffer keeps the first bytes written to it, for diagnostics, and
// silently drops the rest, so a chatty process cannot grow it. It is not
// safe for concurrent use.
type limitedBuffer struct {
	buf []byte
}

// maxDiagnostic bounds the output kept for an error message or a log line.
const maxDiagnostic = 1024

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxDiagnostic - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return string(b.buf) }
