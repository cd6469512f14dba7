package chaos

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/podgate/podgate/internal/testenv/kubetest"
)

// pauseLeaseTTL is the owner Lease of the pause scenario: short, so that
// the pause outlasts it by a margin without making the test long.
const pauseLeaseTTL = 5 * time.Second

// pauseLogin is one login of the pause scenario, as its OpenSSH client saw
// it.
type pauseLogin struct {
	replica, tag string
	code         int
	out, errOut  string
}

// pauseCommand is what every login runs in its pod: it adds its tag to a
// file every session of the pod appends to, waits a little so that a pod
// handed out twice would show both sessions, and prints the file and the
// pod's name. A pod served one user shows one tag.
const pauseCommand = `echo "$1" >> /tmp/podgate-users; sleep 1; echo "POD=$(hostname)"; cat /tmp/podgate-users`

// TestFaultReplicaPaused runs two replicas sharing a pool while OpenSSH
// logins hammer both, SIGSTOPs one of them past its Lease (the other, which
// then leads, deletes its reserved and claimed pods), then SIGCONTs it. Held:
// no pod ever served two users, as the sessions see from inside their pods;
// every login either ran its command or was told plainly why not; and the
// paused replica serves again after it resumes.
func TestFaultReplicaPaused(t *testing.T) {
	env := kubetest.New(t)
	sc := NewScenario(t, "faults", "a replica paused past its Lease while logins hammer both")
	const min = 6
	extra := []string{
		fmt.Sprintf("PODGATE_POOL_MIN=%d", min), "PODGATE_POOL_MAX=20",
		"PODGATE_LEASE_DURATION=" + pauseLeaseTTL.String(), "PODGATE_MAX_WAIT=2m",
	}
	a := startFaultGate(t, env, "a", nil, min, extra...)
	b := startFaultGate(t, env, "b", a, min, extra...)
	w := watchPods(t, env)
	if !w.waitFor(2*time.Minute, func(podCounts) bool { return len(w.reservedFor("a")) > 0 && len(w.reservedFor("b")) > 0 }) {
		t.Fatalf("the replicas never both held reserved pods: %v", w.counts())
	}
	// The pause outlasts the Lease by more than a leader election and a
	// reap pass, should the paused replica be the leader.
	workers, pause := Size(6, 10), pauseLeaseTTL+6*time.Second
	var (
		mu     sync.Mutex
		logins []pauseLogin
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	for i := range workers {
		g, name, user := []*gate{a, b}[i%2], []string{"a", "b"}[i%2], []string{"alice", "bob"}[i/2%2]
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				tag := fmt.Sprintf("%s-%d-%d", user, i, n)
				out, errOut, code := runSSH(g.SSH(user, user, "sh", "-c", shellWord(pauseCommand), "pause", tag), "", 2*time.Minute)
				mu.Lock()
				logins = append(logins, pauseLogin{replica: name, tag: tag, code: code, out: out, errOut: errOut})
				mu.Unlock()
			}
		})
	}
	settle := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-a.Exited():
			t.Error("replica a exited")
		}
	}
	settle(5 * time.Second)
	if err := a.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	held := w.reservedFor("a")
	for n := range w.claimedBy("a") {
		held[n] = true
	}
	settle(pause)
	left := 0
	for n := range held {
		if w.live(n) {
			left++
		}
	}
	if err := a.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	sc.Figure("replica a paused", "%.1f s (Lease %v)", time.Since(stoppedAt).Seconds(), pauseLeaseTTL)
	sc.Check(left == 0, "the paused replica's reserved and claimed pods are deleted before it resumes", "%d of %d left", left, len(held))
	settle(10 * time.Second)
	close(stop)
	wg.Wait()

	after, _, code := runSSH(a.SSH("alice", "alice", "echo", "served"), "", time.Minute)
	sc.Check(code == 0 && strings.TrimSpace(after) == "served", "the paused replica serves again once resumed", "exit %d, %q", code, after)
	judgePauseLogins(t, sc, logins)
	sc.Figure("claim records that failed on replica a (pods taken back while it was paused)", "%.0f",
		a.metric("podgate_claim_record_failures_total"))
}

// judgePauseLogins checks the logins' outcomes: every pod named by one
// session only, every tag alone in its pod, and every failure explained.
func judgePauseLogins(t *testing.T, sc *Scenario, logins []pauseLogin) {
	t.Helper()
	byPod := map[string][]string{}
	var shared, silent []string
	served, told := 0, 0
	for _, l := range logins {
		pod, tags := parsePauseOutput(l.out)
		switch {
		case l.code == 0 && pod != "":
			served++
			byPod[pod] = append(byPod[pod], l.tag)
			if len(tags) != 1 || tags[0] != l.tag {
				shared = append(shared, fmt.Sprintf("%s in %s saw %v", l.tag, pod, tags))
			}
		case strings.Contains(l.errOut, "podgate: "):
			told++
		default:
			silent = append(silent, fmt.Sprintf("%s via %s: exit %d, stdout %q, stderr %q", l.tag, l.replica, l.code, l.out, l.errOut))
		}
	}
	for pod, tags := range byPod {
		if len(tags) > 1 {
			shared = append(shared, fmt.Sprintf("pod %s served %v", pod, tags))
		}
	}
	slices.Sort(shared)
	sc.Figure("logins", "%d: %d served, %d told why not, %d neither", len(logins), served, told, len(silent))
	sc.Check(len(shared) == 0, "no pod ever served two users (seen from inside the pods)", "%d: %v", len(shared), shared)
	sc.Check(len(silent) == 0, "every login ran its command or was told plainly why not", "%d: %v", len(silent), silent)
	sc.Check(served > 0, "logins were served throughout", "%d served", served)
}

// parsePauseOutput reads pauseCommand's output: the pod's name and the tags
// of every session the pod served.
func parsePauseOutput(out string) (string, []string) {
	pod := ""
	var tags []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "POD="):
			pod = strings.TrimPrefix(line, "POD=")
		case line != "":
			tags = append(tags, line)
		}
	}
	return pod, tags
}

// shellWord quotes s as one word for the remote shell OpenSSH hands the
// command line to.
func shellWord(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
