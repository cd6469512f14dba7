package chaos

import (
	"bufio"
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
	"github.com/podgate/podgate/pool"
)

// TestFaultPodDeleted deletes the pod under a live OpenSSH session. Held:
// the user gets a plain message and a non-zero exit status, podgate logs
// the pod, and another user's session and the pool are unaffected.
func TestFaultPodDeleted(t *testing.T) {
	env := kubetest.New(t)
	sc := NewScenario(t, "faults", "the user's pod deleted under a live session")
	g := startFaultGate(t, env, "a", nil, 2, "PODGATE_POOL_MIN=2")
	w := watchPods(t, env)

	bystander := openCats(t, g, "bob", 1)[0]

	cmd := g.SSH("alice", "alice", "echo ready; exec sleep 3600")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &podgatetest.SafeBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan int, 1)
	go func() {
		// Drain stdout before Wait, as exec.Cmd requires.
		sc := bufio.NewScanner(stdout)
		ready := false
		for sc.Scan() {
			if sc.Text() == "ready" && !ready {
				ready = true
				exited <- -2 // the session is up
			}
		}
		err := cmd.Wait()
		code := 0
		if err != nil {
			code = cmd.ProcessState.ExitCode()
		}
		exited <- code
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	select {
	case c := <-exited:
		if c != -2 {
			t.Fatalf("ssh ended before its session was up: exit %d, stderr %q", c, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("alice's session did not come up; stderr %q", stderr.String())
	}
	var victim string
	for _, p := range w.pods() {
		if p.Annotations[pool.AnnUser] == "alice" && p.Labels[pool.LabelState] == pool.StateClaimed {
			victim = p.Name
		}
	}
	if victim == "" {
		t.Fatal("no claimed pod for alice")
	}

	one := int64(1)
	t0 := time.Now()
	if err := env.Client.CoreV1().Pods(env.Namespace).Delete(context.Background(), victim, metav1.DeleteOptions{GracePeriodSeconds: &one}); err != nil {
		t.Fatal(err)
	}
	code := -1
	select {
	case code = <-exited:
	case <-time.After(2 * time.Minute):
		t.Error("ssh still running 2 minutes after its pod was deleted")
	}
	took := time.Since(t0)
	msg := withoutProgressLines(stderr.String())
	sc.Figure("pod deleted → ssh exit", "%.1f s", took.Seconds())
	sc.Figure("what the user saw", "exit %d, %q", code, msg)
	sc.Check(code > 0, "the user gets a non-zero exit status", "exit %d", code)
	sc.Check(strings.Contains(msg, "podgate: your pod went away"), "the user gets a plain message", "%q", msg)
	sc.Check(!strings.Contains(msg, victim) && !strings.Contains(msg, env.Namespace), "the message carries no operator detail", "%q", msg)
	sc.Check(strings.Contains(g.Log.String(), victim), "podgate logs the pod", "pod %s in podgate's log: %v", victim, strings.Contains(g.Log.String(), victim))

	err = bystander.probe("still-here", 10*time.Second)
	sc.Check(err == nil, "another user's live session is unaffected", "%v", errOr(err, "bob's cat answered"))
	out, errOut, c := runSSH(g.SSH("bob", "bob", "echo new"), "", time.Minute)
	sc.Check(c == 0 && strings.TrimSpace(out) == "new", "new connections still work", "exit %d, %q %q", c, out, errOut)
	// Bob's new login may have found the refill still starting: that miss
	// grows the target above min, so compare with podgate's own target.
	back := w.waitFor(2*time.Minute, func(pc podCounts) bool {
		return w.readyIdle("default") == g.poolTarget("default") && pc[pool.StateClaimed] == 1
	})
	sc.Check(back, "the pool is back at target", "%v (ready idle %d, target %d)", w.counts(), w.readyIdle("default"), g.poolTarget("default"))
}

// withoutProgressLines drops podgate's "waiting for a pod" lines.
func withoutProgressLines(s string) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" && !strings.Contains(l, "waiting for a pod") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	return strings.Join(keep, " | ")
}

// errOr is err's text, or ok when err is nil.
func errOr(err error, ok string) string {
	if err != nil {
		return err.Error()
	}
	return ok
}
