package chaos

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/pool"
)

// Fixed user messages of the scheduler (scheduler/usermsg.go) and sshfront.
const (
	msgAtCapacity  = "podgate: all pods are busy, please try again in a minute"
	msgWaitTimeout = "podgate: no pod became free in time, please try again in a minute"
	msgTooManyConn = "podgate: you have too many connections open; close one and try again"
)

// burstResult is what one OpenSSH client of a burst saw.
type burstResult struct {
	user, out, errOut string
	code              int
	took              time.Duration
}

// burst runs one real OpenSSH client per login at once, each running cmd,
// and returns what each saw. deadline bounds every client: a client still
// running then has hung and is killed.
func (g *gate) burst(logins []string, cmd string, deadline time.Duration) []burstResult {
	res := make([]burstResult, len(logins))
	var wg sync.WaitGroup
	for i, login := range logins {
		user, _, _ := strings.Cut(login, "+")
		wg.Go(func() {
			start := time.Now()
			out, errOut, code := runSSH(g.SSH(user, login, cmd), "", deadline)
			res[i] = burstResult{user: login, out: out, errOut: errOut, code: code, took: time.Since(start)}
		})
	}
	wg.Wait()
	return res
}

// TestLoadBurstAboveCapacity sends bursts of real OpenSSH clients beyond
// the pool, the wait queue and the per-user limit, and checks that every
// excess user gets a plain message and a failing exit status within the
// configured wait (never a hang), and that podgate neither crashes nor
// piles up pods.
func TestLoadBurstAboveCapacity(t *testing.T) {
	env := kubetest.New(t)
	sc := NewScenario(t, "load", "bursts above the pool and the limits")
	const maxWaiting, maxWait = 2, 4 * time.Second
	n := Size(8, 30)
	var users []string
	for i := range n {
		users = append(users, fmt.Sprintf("u%d", i))
	}
	g := startGate(t, env, gateOpts{Users: users, WaitIdle: 2, Env: []string{
		"PODGATE_POOL_MIN=2", "PODGATE_POOL_MAX=2", "PODGATE_POD_CPU_REQUEST=10m", "PODGATE_POD_MEMORY_REQUEST=32Mi",
		fmt.Sprintf("PODGATE_MAX_WAITING=%d", maxWaiting), "PODGATE_MAX_WAIT=60s",
		"PODGATE_MAX_CONNECTIONS_PER_USER=1", "PODGATE_MAX_CONNECTIONS_PER_IP=0",
	}})
	sc.Figure("limits", "default profile: 2 warm pods, wait 60s; profile slow: no warm pod, pods take a minute to start, wait %v; PODGATE_MAX_WAITING=%d, PODGATE_MAX_CONNECTIONS_PER_USER=1; %d OpenSSH clients per burst", maxWait, maxWaiting, n)

	// A profile whose pods take a minute to start (an init container
	// sleeps) and which keeps no warm pods: every login must wait, so the
	// queue bound and the wait bound decide every outcome.
	no := false
	pt := &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "slow", Labels: map[string]string{"podgate.io/profile": "slow"},
			Annotations: map[string]string{"podgate.io/user-selectable": "true", "podgate.io/pool-min": "0",
				"podgate.io/pool-max": "1", "podgate.io/max-wait": maxWait.String()}},
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			AutomountServiceAccountToken: &no,
			InitContainers: []corev1.Container{{Name: "slow-start", Image: kubetest.DebianImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sleep", "60"}}},
			Containers: []corev1.Container{{Name: "main", Image: kubetest.DebianImage, ImagePullPolicy: corev1.PullNever}},
		}},
	}
	if _, err := env.Client.CoreV1().PodTemplates(env.Namespace).Create(context.Background(), pt, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The profile store is fed by an informer in another process; its
	// pool target gauge appearing is the sign it was picked up.
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if m, err := g.Scrape(context.Background()); err == nil && len(m.Find("podgate_pool_target", "profile", "slow")) > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Burst 1: everyone asks for the slow profile at once.
	var logins []string
	for _, u := range users {
		logins = append(logins, u+"+slow")
	}
	res := g.burst(logins, "echo in", maxWait+30*time.Second)
	var timedOut, busy, other []string
	var longest time.Duration
	for _, r := range res {
		longest = max(longest, r.took)
		switch {
		case r.code != 0 && strings.Contains(r.errOut, msgWaitTimeout):
			timedOut = append(timedOut, r.user)
		case r.code != 0 && strings.Contains(r.errOut, msgAtCapacity):
			busy = append(busy, r.user)
		default:
			other = append(other, fmt.Sprintf("%s: exit %d, out %q, err %q", r.user, r.code, r.out, r.errOut))
		}
	}
	sc.Figure("burst on a profile with no warm pod", "%d clients: %d waited and were told no pod became free, %d refused at once as busy, slowest answer %.1f s", n, len(timedOut), len(busy), longest.Seconds())
	sc.Check(len(other) == 0, "every client of the burst got a plain message and a failing exit status", "%d other outcomes %v", len(other), firstN(other, 3))
	sc.Check(len(timedOut) == maxWaiting && len(busy) == n-maxWaiting,
		"exactly PODGATE_MAX_WAITING logins wait, the rest are refused at once", "%d waited, %d refused", len(timedOut), len(busy))
	sc.Check(longest < maxWait+20*time.Second, "no client hangs: every answer came within the wait plus start-up slack", "slowest %.1f s, wait %v", longest.Seconds(), maxWait)

	// Burst 2: the default profile, more users than warm pods. Users
	// beyond the pool wait for a cold pod (up to PODGATE_MAX_WAITING of
	// them) or are refused plainly at once.
	res = g.burst(users, "sleep 3; echo done", 2*time.Minute)
	var ran, refused []string
	other = nil
	longest = 0
	for _, r := range res {
		longest = max(longest, r.took)
		switch {
		case r.code == 0 && strings.TrimSpace(r.out) == "done":
			ran = append(ran, r.user)
		case r.code != 0 && (strings.Contains(r.errOut, msgAtCapacity) || strings.Contains(r.errOut, msgWaitTimeout)):
			refused = append(refused, r.user)
		default:
			other = append(other, fmt.Sprintf("%s: exit %d, out %q, err %q", r.user, r.code, r.out, r.errOut))
		}
	}
	sc.Figure("burst on the default profile", "%d clients, 2 warm pods: %d ran, %d refused with a plain message, slowest %.1f s", n, len(ran), len(refused), longest.Seconds())
	sc.Check(len(other) == 0, "every client of the default-profile burst ran or was refused plainly", "%d other outcomes %v", len(other), firstN(other, 3))
	sc.Check(len(ran) >= 2, "the warm pods were used", "%d ran", len(ran))
	sc.Check(len(ran) <= 2+maxWaiting, "no more users served than warm pods plus allowed waiters", "%d ran", len(ran))

	// Per-user limit: a second connection of a user who holds one.
	hold := g.SSH("u0", "u0", "echo held; sleep 30")
	holdOut, err := hold.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := readLine(holdOut, time.Minute)
	out, errOut, code := runSSH(g.SSH("u0", "u0", "echo second"), "", 30*time.Second)
	_ = hold.Process.Kill()
	_ = hold.Wait()
	sc.Check(line == "held" && code != 0 && strings.Contains(errOut, msgTooManyConn) && !strings.Contains(out, "second"),
		"a user over PODGATE_MAX_CONNECTIONS_PER_USER is told so plainly", "first %q; second exit %d, err %q", line, code, errOut)

	// Nothing crashed, no pods piled up, and service goes on.
	sc.Check(g.exitedNot(), "podgate still running after the bursts", "exited: %v", !g.exitedNot())
	pw := watchPods(t, env)
	slowPods := 0
	for _, p := range pw.pods() {
		if p.Labels[pool.LabelProfile] == "slow" && p.DeletionTimestamp == nil {
			slowPods++
		}
	}
	sc.Check(slowPods <= maxWaiting, "no pile-up: at most one slow pod per login that was allowed to wait", "%d slow-profile pods (%v)", slowPods, pw.counts())
	out, errOut, code = runSSH(g.SSH("u1", "u1", "echo after"), "", time.Minute)
	sc.Check(code == 0 && strings.TrimSpace(out) == "after", "a normal login works after the bursts", "exit %d, out %q, err %q", code, out, errOut)
}
