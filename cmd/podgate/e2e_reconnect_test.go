package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgate/podgate/internal/testenv/hosttools"
	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
	"github.com/podgate/podgate/pool"
	"github.com/podgate/podgate/scheduler"
)

// replica is one of several podgate processes serving one namespace, all
// authorising the keys in keys (the first replica's).
type replica struct {
	*podgatetest.Server
	keys map[string]string // each user's private key, shared by every replica
}

// startReplica runs a podgate replica with replica id id. keysFrom is the
// replica whose users' keys it authorises too (nil: its own), so that one
// key logs a user in through any replica.
func startReplica(t *testing.T, env *kubetest.Env, id string, keysFrom *replica, extra ...string) *replica {
	t.Helper()
	hosttools.Require(t, "ssh", "ssh-keygen")
	e := append([]string{"PODGATE_REPLICA_ID=" + id}, extra...)
	if keysFrom != nil {
		e = append(e, "PODGATE_AUTHORIZED_KEYS="+filepath.Join(keysFrom.Dir, "keys"))
	}
	s, err := podgatetest.Start(context.Background(), podgatetest.Options{
		Bin: podgateBin, Kubeconfig: kubetest.Kubeconfig(), Namespace: env.Namespace,
		Dir: t.TempDir(), Users: []string{"alice", "bob"}, Env: e, WaitIdle: 1, Timeout: kubetest.Timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{Server: s, keys: s.Keys}
	if keysFrom != nil {
		r.keys = keysFrom.keys
	}
	t.Cleanup(func() {
		if err := s.Stop(30 * time.Second); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("podgate %s log:\n%s", id, s.Log.String())
		}
	})
	return r
}

// ssh is a real OpenSSH client logging in as login with user's key.
func (r *replica) ssh(user, login string, args ...string) *exec.Cmd {
	return exec.Command("ssh", append(podgatetest.SSHOptions(r.keys[user], "-p", r.Port, login+"@127.0.0.1"), args...)...)
}

// podOf runs a command through r as login that prints its pod's name
// last, and returns stdout's other lines, the pod, and stderr.
func podOf(t *testing.T, r *replica, user, login, cmd string) (string, string, string) {
	t.Helper()
	out, errOut, code := runCmd(t, r.ssh(user, login, cmd+"; cat /etc/hostname"), nil)
	if code != 0 {
		t.Fatalf("ssh %s through %s: exit %d, stdout %q, stderr %q", login, r.Port, code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.Join(lines[:len(lines)-1], "\n"), lines[len(lines)-1], errOut
}

// waitParked waits until the API server shows pod parked, and returns it.
func waitParked(t *testing.T, env *kubetest.Env, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	eventually(t, 30*time.Second, "pod "+name+" parked", func() bool {
		p, err := env.Client.CoreV1().Pods(env.Namespace).Get(context.Background(), name, metav1.GetOptions{})
		pod = p
		return err == nil && p.Labels[pool.LabelState] == pool.StateParked
	})
	return pod
}

// TestE2EReconnectAcrossReplicas: with two replicas, a user's pod parked by
// one is found and taken back through the other, and through the first
// after it restarted; users trying username tricks never land in it; and a
// parked pod whose window has passed is deleted by the leader within a
// reconcile pass.
func TestE2EReconnectAcrossReplicas(t *testing.T) {
	env := kubetest.New(t)
	const window = "10m"
	args := []string{"PODGATE_RECONNECT_WINDOW=" + window, "PODGATE_MAX_PODS_PER_USER=3"}
	a := startReplica(t, env, "e2e-a", nil, args...)
	b := startReplica(t, env, "e2e-b", a, args...)

	// (a) A file written through A is there after a reconnect through B.
	_, pod, errOut := podOf(t, a, "alice", "alice", "echo kept > ~/marker")
	if !strings.Contains(errOut, "podgate: you are in a new pod") {
		t.Errorf("first login's stderr %q lacks the new-pod line", errOut)
	}
	parked := waitParked(t, env, pod)
	if k := parked.Labels[pool.LabelUserKey]; k != scheduler.UserKey("alice", "default") || parked.Labels[pool.LabelOwner] != "" ||
		parked.Annotations[pool.AnnParkedUntil] == "" {
		t.Errorf("parked pod's labels %v, annotations %v", parked.Labels, parked.Annotations)
	}
	out, again, errOut := podOf(t, b, "alice", "alice", "cat ~/marker")
	if again != pod || out != "kept" {
		t.Fatalf("reconnect through the other replica landed in %s with marker %q; want %s with \"kept\"", again, out, pod)
	}
	if !strings.Contains(errOut, "podgate: you are back in the pod you left") {
		t.Errorf("reconnect's stderr %q lacks the back-in-your-pod line", errOut)
	}
	eventually(t, 10*time.Second, "replica B's audit line for the reconnect", func() bool {
		log, _ := os.ReadFile(b.AuditLog)
		return strings.Contains(string(log), `"pod":"`+pod+`"`) && strings.Contains(string(log), `"reconnect":"same_pod","parked":true`)
	})
	if m, err := b.Scrape(context.Background()); err != nil || m.Value("podgate_reconnects_total", "result", "same_pod") != 1 {
		t.Errorf("replica B's podgate_reconnects_total{result=same_pod} = %v (%v), want 1", m.Value("podgate_reconnects_total", "result", "same_pod"), err)
	}
	waitParked(t, env, pod)

	// (d) Isolation: nobody but alice reaches her parked pod.
	_, bobs, _ := podOf(t, a, "bob", "bob", "true")
	if bobs == pod {
		t.Fatal("bob landed in alice's parked pod")
	}
	for _, login := range []string{"alice", "Alice", "ALICE", "alice+default", "\u0430lice", "jos\u00e9", "jose\u0301", "alice\u200b"} {
		// bob's key as alice (in any spelling), and look-alike names,
		// are refused before any pod is chosen.
		if _, errOut, code := runCmd(t, b.ssh("bob", login, "cat /etc/hostname"), nil); code != 255 || !strings.Contains(errOut, "Permission denied") {
			t.Errorf("bob's key as %q: exit %d, stderr %q; want refused", login, code, errOut)
		}
	}
	waitParked(t, env, pod)

	// (c) Replica A restarts while the pod is parked: through the new A
	// the reconnect still lands in it. Upper case is the same user,
	// canonically alice, holding alice's key.
	if err := a.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	a2 := startReplica(t, env, "e2e-a", a, args...)
	out, again, _ = podOf(t, a2, "alice", "ALICE", "cat ~/marker")
	if again != pod || out != "kept" {
		t.Fatalf("after replica A restarted, alice landed in %s with marker %q; want %s", again, out, pod)
	}
	waitParked(t, env, pod)

	// (b) A short window in a profile of its own: the leader deletes the
	// pod within a reconcile pass (1 s) of the window's end.
	s := &server{Server: a2.Server, env: env}
	createProfile(t, s, "short", map[string]string{
		"podgate.io/user-selectable": "true", "podgate.io/pool-min": "1", "podgate.io/reconnect-window": "5s",
	}, debianSpec("short"), func() bool {
		_, _, code := runCmd(t, a2.ssh("bob", "bob+short", "true"), nil)
		return code == 0
	})
	_, short, _ := podOf(t, a2, "alice", "alice+short", "true")
	if short == pod {
		t.Fatal("alice's login to another profile landed in her default profile's parked pod")
	}
	sp := waitParked(t, env, short)
	until, err := time.Parse(time.RFC3339Nano, sp.Annotations[pool.AnnParkedUntil])
	if err != nil {
		t.Fatal(err)
	}
	var gone time.Time
	eventually(t, 30*time.Second, "the expired parked pod deleted", func() bool {
		p, err := env.Client.CoreV1().Pods(env.Namespace).Get(context.Background(), short, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && p.DeletionTimestamp != nil) {
			gone = time.Now()
			return true
		}
		return false
	})
	late := gone.Sub(until)
	t.Logf("parked pod %s deleted %v after its window ended", short, late.Round(time.Millisecond))
	if late > 3*time.Second {
		t.Errorf("the parked pod was deleted %v after its window, more than a reconcile pass (1 s) and the poll", late)
	}
	// The default profile's pod, in its window, is still parked.
	waitParked(t, env, pod)
}

// TestE2EPerUserLimitAcrossReplicas: with PODGATE_MAX_PODS_PER_USER=3 and
// two replicas, a user holding 3 pods through both is refused a 4th on
// either; and logins fired at both replicas at once show how far the race
// between replicas overshoots the limit (bounded by (R−1)·limit = 3).
func TestE2EPerUserLimitAcrossReplicas(t *testing.T) {
	env := kubetest.New(t)
	args := []string{"PODGATE_MAX_PODS_PER_USER=3", "PODGATE_POOL_MIN=4", "PODGATE_MAX_CONNECTIONS_PER_USER=0"}
	a := startReplica(t, env, "e2e-a", nil, args...)
	b := startReplica(t, env, "e2e-b", a, args...)
	const limitMsg = "podgate: you already have as many pods as one user may hold at once (3)"

	var held []*exec.Cmd
	for _, r := range []*replica{a, b, a} {
		held = append(held, hold(t, r, "alice"))
	}
	key := scheduler.UserKey("alice", "default")
	eventually(t, 30*time.Second, "3 pods claimed for alice", func() bool { return userPods(t, env, key) == 3 })
	// Both caches have seen the claims once the metrics show them.
	for _, r := range []*replica{a, b} {
		eventually(t, 10*time.Second, "the replica's cache showing 3 claimed pods", func() bool {
			m, err := r.Scrape(context.Background())
			return err == nil && m.Value("podgate_pool_pods", "profile", "default", "state", "claimed") >= 3
		})
	}
	for name, r := range map[string]*replica{"A": a, "B": b} {
		out, errOut, code := runCmd(t, r.ssh("alice", "alice", "echo fourth"), nil)
		if code == 0 || strings.Contains(out, "fourth") || !strings.Contains(errOut, limitMsg) {
			t.Errorf("4th pod through replica %s: exit %d, stdout %q, stderr %q; want refused", name, code, out, errOut)
		}
	}
	if _, _, code := runCmd(t, b.ssh("bob", "bob", "true"), nil); code != 0 {
		t.Error("bob refused while alice is at her limit")
	}
	for _, c := range held {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
	eventually(t, kubetest.Timeout, "alice's pods released", func() bool { return userPods(t, env, key) == 0 })

	// Concurrent: 8 logins at once, 4 through each replica.
	const n = 8
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		won []*exec.Cmd
	)
	start := make(chan struct{})
	for i := range n {
		r := a
		if i%2 == 1 {
			r = b
		}
		wg.Go(func() {
			<-start
			if c, ok := tryHold(r, "alice"); ok {
				mu.Lock()
				won = append(won, c)
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	peak := userPods(t, env, key)
	for _, c := range won {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
	overshoot := len(won) - 3
	t.Logf("concurrent logins: %d of %d admitted through 2 replicas with a limit of 3 (overshoot %d; pods under alice's key at the peak: %d)", len(won), n, overshoot, peak)
	if len(won) < 3 {
		t.Errorf("only %d logins admitted, want at least the limit", len(won))
	}
	if overshoot > 3 {
		t.Errorf("overshoot %d beyond the stated bound (R−1)·limit = 3", overshoot)
	}
}

// hold logs user in through r with a command that prints a line and
// sleeps, and returns once the line arrived; the test kills it.
func hold(t *testing.T, r *replica, user string) *exec.Cmd {
	t.Helper()
	c, ok := tryHold(r, user)
	if !ok {
		t.Fatalf("holding a pod for %s through %s failed", user, r.Port)
	}
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	return c
}

// tryHold is hold that reports a refused login instead of failing.
func tryHold(r *replica, user string) (*exec.Cmd, bool) {
	c := r.ssh(user, user, "echo held; exec sleep 300")
	out, err := c.StdoutPipe()
	if err != nil {
		return nil, false
	}
	if err := c.Start(); err != nil {
		return nil, false
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "held" {
		_ = c.Process.Kill()
		_ = c.Wait()
		return nil, false
	}
	return c, true
}

// userPods counts the claimed and parked pods under key, from the API
// server.
func userPods(t *testing.T, env *kubetest.Env, key string) int {
	t.Helper()
	pods, err := env.Client.CoreV1().Pods(env.Namespace).List(context.Background(), metav1.ListOptions{
		LabelSelector: fmt.Sprintf("%s=%s", pool.LabelUserKey, key),
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pods.Items {
		if s := p.Labels[pool.LabelState]; p.DeletionTimestamp == nil && (s == pool.StateClaimed || s == pool.StateParked) {
			n++
		}
	}
	return n
}
