package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/localcluster"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
	"github.com/podgate/podgate/pool"
)

// This file holds what the fault scenarios share: podgate started small
// enough for many pods on one node, long-lived sessions whose streams can
// be probed, and stopping and restarting one daemon of the local cluster.

// faultEnv is the environment every fault scenario starts podgate with:
// tiny requests so that tens of pods fit, and no per-user or per-address
// limits, which are not what these scenarios are about.
var faultEnv = []string{
	"PODGATE_POD_CPU_REQUEST=10m",
	"PODGATE_POD_MEMORY_REQUEST=16Mi",
	"PODGATE_MAX_CONNECTIONS_PER_USER=0",
	"PODGATE_MAX_CONNECTIONS_PER_IP=0",
	"PODGATE_MAX_PODS_PER_USER=0",
	"PODGATE_LOG_LEVEL=debug",
}

// startFaultGate starts podgate with faultEnv plus env as replica id.
func startFaultGate(t *testing.T, env *kubetest.Env, id string, keys *gate, waitIdle int, extra ...string) *gate {
	t.Helper()
	return startGate(t, env, gateOpts{
		Users: []string{"alice", "bob"}, ReplicaID: id, Keys: keys, WaitIdle: waitIdle,
		Env: append(append([]string{}, faultEnv...), extra...),
	})
}

// catSession is a live session running cat: every line written comes back,
// through the exec stream opened when the session started, so probing it
// needs no new API call.
type catSession struct {
	client *ssh.Client
	sess   *ssh.Session
	in     io.WriteCloser
	lines  chan string
	stderr *podgatetest.SafeBuffer
	ended  chan struct{} // closed when the session has ended
	endErr error         // the session's end, valid once ended is closed
}

// end reports whether the session has ended, with its exit error (an
// *ssh.ExitError carries the status) and what it wrote to stderr.
func (c *catSession) end() (bool, string, error) {
	select {
	case <-c.ended:
		return true, c.stderr.String(), c.endErr
	default:
		return false, "", nil
	}
}

// openCat logs in as user and starts cat in a new session.
func openCat(g *gate, user string) (*catSession, error) {
	c, _, err := g.dial(user, user)
	if err != nil {
		return nil, fmt.Errorf("dialing: %w", err)
	}
	s, err := c.NewSession()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("opening a session: %w", err)
	}
	in, err := s.StdinPipe()
	if err != nil {
		c.Close()
		return nil, err
	}
	out, err := s.StdoutPipe()
	if err != nil {
		c.Close()
		return nil, err
	}
	errBuf := &podgatetest.SafeBuffer{}
	s.Stderr = errBuf
	if err := s.Start("cat"); err != nil {
		c.Close()
		return nil, fmt.Errorf("starting cat: %w", err)
	}
	cs := &catSession{client: c, sess: s, in: in, lines: make(chan string, 16), stderr: errBuf, ended: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			cs.lines <- sc.Text()
		}
		close(cs.lines)
		cs.endErr = s.Wait()
		close(cs.ended)
	}()
	if err := cs.probe("hello", 30*time.Second); err != nil {
		cs.close()
		return nil, err
	}
	return cs, nil
}

// probe writes word and waits up to timeout for it to come back.
func (c *catSession) probe(word string, timeout time.Duration) error {
	if _, err := fmt.Fprintln(c.in, word); err != nil {
		return fmt.Errorf("writing to cat: %w", err)
	}
	select {
	case l, ok := <-c.lines:
		if !ok {
			return fmt.Errorf("cat's output ended")
		}
		if l != word {
			return fmt.Errorf("cat answered %q to %q", l, word)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("no answer from cat within %v", timeout)
	}
}

func (c *catSession) close() { c.client.Close() }

// openCats opens n cat sessions as user, in parallel, closing them when the
// test ends.
func openCats(t *testing.T, g *gate, user string, n int) []*catSession {
	t.Helper()
	out := make([]*catSession, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = openCat(g, user)
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range out {
			if c != nil {
				c.close()
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("session %d of %d: %v", i+1, n, err)
		}
	}
	return out
}

// probeAll probes every session in parallel and returns how many answered.
func probeAll(cats []*catSession, word string, timeout time.Duration) (int, []error) {
	var (
		mu   sync.Mutex
		ok   int
		errs []error
		wg   sync.WaitGroup
	)
	for _, c := range cats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.probe(word, timeout)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok++
			} else {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	return ok, errs
}

// claimedBy returns the names of the claimed pods whose owner is replica.
func (w *podWatch) claimedBy(replica string) map[string]bool {
	out := map[string]bool{}
	for _, p := range w.pods() {
		if p.Labels[pool.LabelState] == pool.StateClaimed && p.Labels[pool.LabelOwner] == replica && p.DeletionTimestamp == nil {
			out[p.Name] = true
		}
	}
	return out
}

// idleNames returns the pods of profile waiting for a user (idle or
// reserved) that are not being deleted.
func (w *podWatch) idleNames(profile string) map[string]bool {
	out := map[string]bool{}
	for _, p := range w.pods() {
		if pool.Spare(p) && p.Labels[pool.LabelProfile] == profile && p.DeletionTimestamp == nil {
			out[p.Name] = true
		}
	}
	return out
}

// reservedFor returns the pods reserved for replica, not being deleted.
func (w *podWatch) reservedFor(replica string) map[string]bool {
	out := map[string]bool{}
	for _, p := range w.pods() {
		if p.Labels[pool.LabelState] == pool.StateReserved && p.Labels[pool.LabelOwner] == replica && p.DeletionTimestamp == nil {
			out[p.Name] = true
		}
	}
	return out
}

// live reports whether a pod of that name exists and is not being deleted.
func (w *podWatch) live(name string) bool {
	for _, p := range w.pods() {
		if p.Name == name {
			return p.DeletionTimestamp == nil
		}
	}
	return false
}

// readyIdle counts Ready pods of profile waiting for a user (idle or
// reserved) that are not being deleted.
func (w *podWatch) readyIdle(profile string) int {
	n := 0
	for _, p := range w.pods() {
		if pool.Spare(p) && p.Labels[pool.LabelProfile] == profile &&
			p.DeletionTimestamp == nil && kubetest.PodReady(p) {
			n++
		}
	}
	return n
}

// disruptive skips the test unless disruptive scenarios were asked for:
// they stop daemons of the shared cluster, so they run only under
// `make chaos` (PODGATE_CHAOS_DISRUPT=1, under the exclusive cluster lock)
// and only against the local cluster, whose daemons can be stopped.
func disruptive(t *testing.T) localcluster.Options {
	t.Helper()
	if os.Getenv("PODGATE_CHAOS_DISRUPT") != "1" {
		t.Skip("stops a daemon of the shared cluster: runs under `make chaos` (PODGATE_CHAOS_DISRUPT=1, exclusive cluster lock)")
	}
	o := localcluster.Options{StateDir: localcluster.DefaultStateDir, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	if kubetest.Kubeconfig() != o.Kubeconfig() {
		t.Skipf("the cluster under test (%s) is not the local cluster, whose daemons this test stops", kubetest.Kubeconfig())
	}
	return o
}

// stopDaemon stops one daemon of the local cluster and makes sure it is
// started again when the test ends, whatever happens; the supervisor also
// restarts it by itself after maxDown. The returned func starts it now and
// reports how long it took to be ready.
func stopDaemon(t *testing.T, o localcluster.Options, name string, maxDown time.Duration) func() (time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := o.StopComponent(ctx, name, maxDown, true); err != nil {
		t.Fatalf("stopping %s: %v", name, err)
	}
	var once sync.Once
	start := func() (d time.Duration, err error) {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			t0 := time.Now()
			err = o.StartComponent(ctx, name)
			d = time.Since(t0)
		})
		return d, err
	}
	t.Cleanup(func() {
		if _, err := start(); err != nil {
			t.Errorf("starting %s again: %v", name, err)
		}
	})
	return start
}

// testWriter sends the harness's log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// profileTemplate is a PodTemplate defining profile name, selectable by
// login name (user+name), with a pool of min idle pods and the container c.
func profileTemplate(name string, min int, c corev1.Container) *corev1.PodTemplate {
	no := false
	c.Name = "main"
	return &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"podgate.io/profile": name},
			Annotations: map[string]string{"podgate.io/user-selectable": "true", "podgate.io/pool-min": fmt.Sprint(min), "podgate.io/max-wait": "60s"}},
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{AutomountServiceAccountToken: &no, Containers: []corev1.Container{c}}},
	}
}
