package chaos

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/pool"
)

// TestFaultClusterKubelet stops the kubelet. Held: the pods go NotReady and
// the pool stops handing them out (a login is refused plainly instead of
// landing in a dead pod); when the kubelet returns, the pool recovers and
// logins work, with no podgate restart.
func TestFaultClusterKubelet(t *testing.T) {
	o := disruptive(t)
	env := kubetest.New(t)
	sc := NewScenario(t, "faults", "kubelet stopped")
	const min = 3
	g := startFaultGate(t, env, "a", nil, min, fmt.Sprintf("PODGATE_POOL_MIN=%d", min), "PODGATE_MAX_WAIT=10s")
	w := watchPods(t, env)
	if !w.waitFor(2*time.Minute, func(podCounts) bool { return w.readyIdle("default") >= min }) {
		t.Fatalf("pool not at %d idle: %v", min, w.counts())
	}
	idleBefore := w.idleNames("default")

	start := stopDaemon(t, o, "kubelet", 6*time.Minute)
	down := time.Now()
	// The node lifecycle controller marks the pods NotReady once the node
	// misses its grace period.
	notReady := w.waitFor(4*time.Minute, func(podCounts) bool { return w.readyIdle("default") == 0 })
	sc.Figure("kubelet stopped → no Ready idle pod", "%.0f s", time.Since(down).Seconds())
	sc.Check(notReady, "pods go NotReady", "ready idle %d, %v", w.readyIdle("default"), w.counts())

	t0 := time.Now()
	out, errOut, code := runSSH(g.SSH("alice", "alice", "echo landed"), "", 2*time.Minute)
	took := time.Since(t0)
	msg := withoutProgressLines(errOut)
	sc.Figure("login while the kubelet is down", "exit %d after %.1f s: %q", code, took.Seconds(), msg)
	sc.Check(code != 0 && strings.TrimSpace(out) != "landed", "a login is not handed a NotReady pod", "exit %d, output %q", code, out)
	sc.Check(strings.HasPrefix(msg, "podgate: "), "the refused user gets a plain message", "%q", msg)
	sc.Check(took < time.Minute, "the login does not hang (max wait 10 s)", "%.1f s", took.Seconds())
	var handedOut []string
	for _, p := range w.pods() {
		if idleBefore[p.Name] && p.Labels[pool.LabelState] == pool.StateClaimed {
			handedOut = append(handedOut, p.Name)
		}
	}
	sc.Check(len(handedOut) == 0, "the pool stops handing NotReady pods out", "claimed while NotReady: %v", handedOut)
	pending := 0
	for _, p := range w.pods() {
		if p.Status.Phase == corev1.PodPending && p.DeletionTimestamp == nil {
			pending++
		}
	}
	sc.Figure("pods while the kubelet is down", "%v, %d pending", w.counts(), pending)

	downFor := time.Since(down)
	took, err := start()
	if err != nil {
		t.Fatalf("starting the kubelet again: %v", err)
	}
	sc.Figure("outage", "kubelet down %.0f s, healthy %.1f s after start", downFor.Seconds(), took.Seconds())
	up := time.Now()
	recovered := w.waitFor(4*time.Minute, func(podCounts) bool { return w.readyIdle("default") >= min })
	sc.Figure("kubelet back → pool at target", "%.0f s", time.Since(up).Seconds())
	sc.Check(recovered, "when the kubelet returns, the pool recovers", "ready idle %d, %v", w.readyIdle("default"), w.counts())
	out, errOut, code = runSSH(g.SSH("alice", "alice", "echo landed"), "", 2*time.Minute)
	sc.Check(code == 0 && strings.TrimSpace(out) == "landed", "logins work again, with no podgate restart", "exit %d, %q %q", code, out, errOut)
	select {
	case <-g.Exited():
		sc.Check(false, "podgate does not crash", "exited")
	default:
	}
}
