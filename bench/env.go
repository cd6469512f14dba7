package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

// benchUser is the one user every connection logs in as; the per-user
// limits are lifted so that one user can stand for many.
const benchUser = "bench"

// baseEnv is what every benchmarked podgate runs with: limits meant for
// untrusted crowds from many addresses are lifted (all traffic comes from
// 127.0.0.1 as one user), and guest pods ask for little so that 200 of
// them fit on a 2-CPU node.
var baseEnv = []string{
	"PODGATE_MAX_CONNECTIONS_PER_IP=0",
	"PODGATE_MAX_CONNECTIONS_PER_USER=0",
	"PODGATE_MAX_PODS_PER_USER=0",
	"PODGATE_MAX_PREAUTH=512",
	"PODGATE_MAX_WAITING=1000",
	"PODGATE_POD_CPU_REQUEST=10m",
	"PODGATE_POD_MEMORY_REQUEST=16Mi",
	"PODGATE_IMAGE=localhost/podgate-debian:local",
	"PODGATE_SHELL=/bin/bash -l",
	"PODGATE_LOG_LEVEL=warn",
}

// Runner holds what every scenario needs: the cluster, the podgate binary
// and a scratch directory.
type Runner struct {
	Kube       kubernetes.Interface
	Kubeconfig string
	Bin        string
	// Work is a scratch directory; each podgate gets a subdirectory.
	Work     string
	Progress *Progress
	// Log receives one line per notable event (for the terminal).
	Log func(format string, args ...any)
	// ExtraEnv is added to every podgate's environment after the
	// scenario's own, for diagnosis (e.g. PODGATE_LOG_LEVEL=debug).
	ExtraEnv []string
	// LogDir, when set, receives each podgate's log as <tag>.log.
	LogDir string
}

// namespace creates a fresh namespace for one scenario and returns a
// function that deletes it and waits until it is gone.
func (r *Runner) namespace(ctx context.Context, scenario string) (string, func(), error) {
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := "bench-" + scenario + "-" + hex.EncodeToString(b[:])
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"podgate.io/bench": "true"}}}
	if _, err := r.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return "", nil, fmt.Errorf("creating namespace %q: %w", name, err)
	}
	return name, func() { r.deleteNamespace(name) }, nil
}

// deleteNamespace deletes ns and waits (by watch, at most 3 minutes) until
// it is gone, so that the next scenario starts on a quiet node.
func (r *Runner) deleteNamespace(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nss := r.Kube.CoreV1().Namespaces()
	grace := int64(0)
	// Pods first with no grace period: their idle command exits at once
	// anyway, and waiting for 200 graceful deletions would dominate.
	_ = r.Kube.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &grace}, metav1.ListOptions{})
	if err := nss.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		r.Log("deleting namespace %s: %v", name, err)
		return
	}
	w, err := nss.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		r.Log("watching namespace %s: %v", name, err)
		return
	}
	defer w.Stop()
	if _, err := nss.Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return
	}
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return
			}
			if ev.Type == watch.Deleted {
				return
			}
		case <-ctx.Done():
			r.Log("namespace %s still terminating after 3 minutes", name)
			return
		}
	}
}

// podgate is one running podgate under test with a dialer for it.
type podgate struct {
	*podgatetest.Server
	dialer  *Dialer
	logFile string // where stop writes podgate's log; "" keeps none
}

// start runs podgate in ns with baseEnv plus env, waiting for idle warm
// pods (or none when idle < 0).
func (r *Runner) start(ctx context.Context, ns, tag string, idle int, env ...string) (*podgate, error) {
	dir, err := os.MkdirTemp(r.Work, tag+"-")
	if err != nil {
		return nil, err
	}
	opts := podgatetest.Options{
		Bin: r.Bin, Kubeconfig: r.Kubeconfig, Namespace: ns, Dir: dir,
		Users: []string{benchUser}, Env: append(append(append([]string{}, baseEnv...), env...), r.ExtraEnv...),
		WaitIdle: idle, Timeout: 6 * time.Minute,
	}
	srv, err := podgatetest.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(srv.Keys[benchUser])
	if err != nil {
		_ = srv.Stop(20 * time.Second)
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		_ = srv.Stop(20 * time.Second)
		return nil, fmt.Errorf("parsing the bench key: %w", err)
	}
	pg := &podgate{Server: srv, dialer: &Dialer{Addr: srv.Addr(), User: benchUser, Signer: signer, Timeout: 90 * time.Second}}
	if r.LogDir != "" {
		pg.logFile = filepath.Join(r.LogDir, tag+".log")
	}
	return pg, nil
}

// stop ends podgate gracefully, keeps its log if asked to, and removes its
// files.
func (p *podgate) stop() {
	_ = p.Stop(30 * time.Second)
	if p.logFile != "" {
		_ = os.WriteFile(p.logFile, []byte(p.Log.String()), 0o644)
	}
	_ = os.RemoveAll(p.Dir)
}

// waitIdle polls podgate's idle gauge until it reaches n: podgate is
// another process, so its /metrics is the only thing to watch.
func (p *podgate) waitIdle(ctx context.Context, n int, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		if int(p.IdlePods(ctx, "default")) >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d idle pods: %w", n, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitSettled waits until the pool of podgate pg in ns has done all its
// work: n idle pods, each Ready with its exec streams prepared, none
// starting, exactly held claimed (the caller's own connections), and no
// pod of ns being deleted. It polls, because podgate is another process
// whose /metrics is the thing to watch; the pod list is read at most every
// 50 ms, and only in the benchmark.
func (r *Runner) waitSettled(ctx context.Context, pg *podgate, ns string, n, held int, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		if settledMetrics(ctx, pg, n, held) {
			pods, err := r.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err == nil && !anyDeleting(pods.Items) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a settled pool of %d: %w", n, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// settledMetrics reports whether podgate's own gauges show a full pool with
// nothing starting, exactly held pods claimed, and the replica's published
// share of the pool reserved and prepared.
func settledMetrics(ctx context.Context, pg *podgate, n, held int) bool {
	m, err := pg.Scrape(ctx)
	if err != nil {
		return false
	}
	state := func(s string) float64 { return m.Value("podgate_pool_pods", "profile", "default", "state", s) }
	share := m.Value("podgate_pool_reserved_share", "profile", "default")
	return int(state("idle")) >= n && state("warming") == 0 && int(state("claimed")) == held &&
		share > 0 && m.Value("podgate_pool_reserved_held", "profile", "default") == share &&
		m.Value("podgate_pool_prepared_pods") >= share
}

// anyDeleting reports whether a pod is on its way out.
func anyDeleting(pods []corev1.Pod) bool {
	for i := range pods {
		if pods[i].DeletionTimestamp != nil {
			return true
		}
	}
	return false
}

// rss reads the process's resident set size in bytes from /proc.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
