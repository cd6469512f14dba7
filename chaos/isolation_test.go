package chaos

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podgate/podgate/internal/testenv/kubetest"
)

// TestIsolationReplicas runs two podgate replicas on one namespace. Alice
// keeps a pod in her reconnect window on replica A and a live one on
// replica B, and marks both; meanwhile bob, and a client with an unknown
// key, try every username trick against both replicas at once. Nobody but
// alice may land in a pod of hers. Go clients, since the tricks include
// names OpenSSH would not send.
func TestIsolationReplicas(t *testing.T) {
	env := kubetest.New(t)
	sc := NewScenario(t, "isolation", "another user's pod, two replicas")
	common := []string{"PODGATE_POOL_MIN=4", "PODGATE_POOL_MAX=6", "PODGATE_POD_CPU_REQUEST=10m",
		"PODGATE_RECONNECT_WINDOW=5m", "PODGATE_MAX_CONNECTIONS_PER_USER=0", "PODGATE_MAX_PODS_PER_USER=0",
		"PODGATE_MAX_CONNECTIONS_PER_IP=0", "PODGATE_AUTH_THROTTLE_FAILURES=0"}
	a := startGate(t, env, gateOpts{Users: []string{"alice", "bob"}, WaitIdle: 2, ReplicaID: "ra", Env: common})
	b := startGate(t, env, gateOpts{WaitIdle: 2, ReplicaID: "rb", Keys: a, Env: common})

	// Alice's pods: one parked on A (she disconnected), one live on B.
	mark := func(g *gate) (string, error) {
		c, _, err := g.dial("alice", "alice")
		if err != nil {
			return "", err
		}
		defer c.Close()
		out, code, err := output(c, "echo alice-secret > /tmp/owner; echo $HOSTNAME")
		if err != nil || code != 0 {
			return "", fmt.Errorf("marking: %q %d %v", out, code, err)
		}
		return strings.TrimSpace(out), nil
	}
	parked, err := mark(a)
	if err != nil {
		t.Fatal(err)
	}
	live, _, err := b.dial("alice", "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	out, _, err := output(live, "echo alice-secret > /tmp/owner; echo $HOSTNAME")
	if err != nil {
		t.Fatal(err)
	}
	livePod := strings.TrimSpace(out)
	alicePods := map[string]bool{parked: true, livePod: true}
	sc.Figure("alice's pods", "parked on replica A: %s; live on replica B: %s", parked, livePod)

	// The tricks: logins that look like alice, and bob's own names.
	tricks := []string{
		"alice", "Alice", "ALICE", "alice+default", "Alice+default", "alice+", "+alice", "alice+alice",
		"alice\u200b", "\u0430lice", "al\u0131ce", "\u212alice", "alice ", " alice", "alice\x00", "alice\n",
		"alice@127.0.0.1", "alice/..", "../alice", "bob+alice", "bob", "BOB", "bob+default",
	}
	type attempt struct {
		replica, key, login string
		pod, out            string
		err                 error
	}
	var (
		mu       sync.Mutex
		attempts []attempt
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, 16) // below MAX_PREAUTH, so no attempt is shed
	try := func(g *gate, replica, key, login string) {
		sem <- struct{}{}
		defer func() { <-sem }()
		at := attempt{replica: replica, key: key, login: login}
		c, _, err := g.dial(key, login)
		if err != nil {
			at.err = err
		} else {
			o, _, err := output(c, "cat /tmp/owner 2>/dev/null; echo pod=$HOSTNAME")
			c.Close()
			at.out, at.err = o, err
			if i := strings.Index(o, "pod="); i >= 0 {
				at.pod = strings.TrimSpace(o[i+4:])
			}
		}
		mu.Lock()
		attempts = append(attempts, at)
		mu.Unlock()
	}
	// Alice keeps reconnecting on A (taking and re-parking her pod) while
	// the others try, so the window is exercised under concurrency.
	wg.Go(func() {
		for range 5 {
			if p, err := mark(a); err == nil {
				mu.Lock()
				alicePods[p] = true
				mu.Unlock()
			}
		}
	})
	for _, login := range tricks {
		for _, key := range []string{"bob", "mallory"} {
			wg.Go(func() { try(a, "A", key, login) })
			wg.Go(func() { try(b, "B", key, login) })
		}
	}
	wg.Wait()

	var landed, intruded []string
	refused := 0
	for _, at := range attempts {
		switch {
		case at.pod == "" && !strings.Contains(at.out, "alice-secret"):
			refused++ // refused at login, or by the scheduler (unknown profile)
		case alicePods[at.pod] || strings.Contains(at.out, "alice-secret"):
			intruded = append(intruded, fmt.Sprintf("%s key %s as %q → %s", at.replica, at.key, at.login, at.pod))
		default:
			landed = append(landed, fmt.Sprintf("%q→%s", at.login, at.pod))
		}
	}
	sc.Figure("attempts", "%d logins (%d names × keys bob and unknown × 2 replicas): %d refused, %d got a pod of their own", len(attempts), len(tricks), refused, len(landed))
	sc.Check(len(intruded) == 0, "no username trick lands anyone but alice in alice's parked or live pod, on either replica", "%v", intruded)
	for _, at := range attempts {
		if at.key == "mallory" && at.err == nil {
			sc.Check(false, "an unknown key never logs in", "%s as %q", at.replica, at.login)
		}
	}
	// Bob did get in as himself, so the check above was not vacuous.
	bobIn := 0
	for _, at := range attempts {
		if at.key == "bob" && at.pod != "" {
			bobIn++
		}
	}
	sc.Check(bobIn > 0, "bob logs in as himself (the isolation check is not vacuous)", "%d bob logins ran", bobIn)

	// Alice reconnecting on the replica that parked her pod gets it back;
	// through the other replica she gets a pod of her own (parking is per
	// replica).
	again, err := mark(a)
	sc.Check(err == nil && alicePods[again], "alice reconnecting on replica A lands in her own pod", "%s (hers: %v) %v", again, keys(alicePods), err)
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestIsolationGuestPod checks inside a guest pod, through OpenSSH, that it
// runs as non-root without privileges and without a service-account
// token, and checks the pod spec says so too.
func TestIsolationGuestPod(t *testing.T) {
	env := kubetest.New(t)
	sc := NewScenario(t, "isolation", "guest pods")
	g := startGate(t, env, gateOpts{WaitIdle: 1, Env: []string{"PODGATE_POOL_MIN=1", "PODGATE_POOL_MAX=2", "PODGATE_POD_CPU_REQUEST=10m"}})
	script := `echo uid=$(id -u) gid=$(id -g) pod=$HOSTNAME
ls /var/run/secrets/kubernetes.io/serviceaccount/token >/dev/null 2>&1 && echo token=present || echo token=absent
[ -n "$KUBERNETES_SERVICE_HOST" ] && echo svcenv=present || echo svcenv=absent
grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t' | tr ':' '='
(echo x > /etc/podgate-write-test) 2>/dev/null && echo etcwrite=yes || echo etcwrite=no`
	out, e, code := runSSH(g.SSH("alice", "alice", script), "", time.Minute)
	got := map[string]string{}
	for _, f := range strings.Fields(out) {
		if k, v, ok := strings.Cut(f, "="); ok {
			got[k] = v
		}
	}
	sc.Figure("inside the pod", "%s", strings.Join(strings.Fields(out), " "))
	sc.Check(code == 0, "the probe ran", "exit %d err %q", code, e)
	sc.Check(got["uid"] != "" && got["uid"] != "0", "runs as non-root (id -u)", "uid %q", got["uid"])
	sc.Check(got["token"] == "absent", "no service-account token in the pod", "token %q", got["token"])
	sc.Check(got["CapEff"] == "0000000000000000", "no effective capabilities", "CapEff %q", got["CapEff"])
	sc.Check(got["NoNewPrivs"] == "1", "no privilege escalation (no_new_privs)", "NoNewPrivs %q", got["NoNewPrivs"])
	sc.Check(got["Seccomp"] == "2", "seccomp filter on (RuntimeDefault)", "Seccomp %q", got["Seccomp"])

	pw := watchPods(t, env)
	var bad []string
	n := 0
	for _, p := range pw.pods() {
		n++
		if p.Spec.AutomountServiceAccountToken == nil || *p.Spec.AutomountServiceAccountToken {
			bad = append(bad, p.Name+": token automounted")
		}
		if p.Spec.EnableServiceLinks == nil || *p.Spec.EnableServiceLinks {
			bad = append(bad, p.Name+": service links")
		}
		for _, c := range p.Spec.Containers {
			if !nonRoot(p, c) {
				bad = append(bad, p.Name+"/"+c.Name+": not runAsNonRoot")
			}
		}
	}
	sc.Check(n > 0 && len(bad) == 0, "every guest pod's spec: no token, no service links, runAsNonRoot", "%d pods, %v", n, bad)
	sc.Figure("NetworkPolicy", "see TestIsolationNetworkPolicy: deploy/'s policy under kube-router on the local cluster")
}

func nonRoot(p *corev1.Pod, c corev1.Container) bool {
	if c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil {
		return *c.SecurityContext.RunAsNonRoot
	}
	return p.Spec.SecurityContext != nil && p.Spec.SecurityContext.RunAsNonRoot != nil && *p.Spec.SecurityContext.RunAsNonRoot
}
