package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/localcluster"
	"github.com/podgate/podgate/pool"
)

// The attacks of hostile users on what they land in: a fork bomb, a disk
// fill, a memory bomb, and holding a pod with a connection that opens no
// session or only forwards ports. Each is bounded so that it cannot hurt
// the machine it runs on: the pod's PID limit (the local cluster's
// podPidsLimit), a 128 MiB memory limit, half a CPU, a 64 MiB disk limit,
// a 200 MB write at most, and a deadline on every client. For each, a
// probe session of another user answers throughout; the node, podgate and
// new logins keep working; the offending pod (or process) is killed or
// evicted and cleaned up; the user is told why where a message can reach
// them; and nothing leaks.

// attackEnv bounds every attack.
var attackEnv = []string{
	"PODGATE_POOL_MIN=2", "PODGATE_POOL_MAX=3", "PODGATE_POD_CPU_REQUEST=10m", "PODGATE_POD_MEMORY_REQUEST=16Mi",
	"PODGATE_POD_CPU_LIMIT=500m", "PODGATE_POD_MEMORY_LIMIT=128Mi", "PODGATE_POD_EPHEMERAL_STORAGE_LIMIT=64Mi",
	"PODGATE_MAX_PODS_PER_USER=0", "PODGATE_MAX_CONNECTIONS_PER_USER=0",
}

// attack is one attack's run: it returns what the attacker's client saw.
type attack func(t *testing.T, g *gate, sc *Scenario) (victim string)

// attackScenario starts podgate with attackEnv plus extra and the given
// profile templates, keeps bob's probe session answering while run attacks
// as alice, and checks what must hold afterwards.
func attackScenario(t *testing.T, name string, extra []string, templates []*corev1.PodTemplate, run attack) {
	env := kubetest.New(t)
	sc := NewScenario(t, "hostile", name)
	for _, pt := range templates {
		if _, err := env.Client.CoreV1().PodTemplates(env.Namespace).Create(context.Background(), pt, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	g := startGate(t, env, gateOpts{Users: []string{"alice", "bob"}, WaitIdle: 2, Env: append(append([]string{}, attackEnv...), extra...)})
	pw := watchPods(t, env)
	probe := openCats(t, g, "bob", 1)[0]

	// Probing starts at once: a probe a second also keeps the probe's
	// connection inside a short idle timeout.
	stop := make(chan struct{})
	var (
		mu      sync.Mutex
		answers int
		worst   time.Duration
		failed  []string
	)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			t0 := time.Now()
			err := probe.probe("probe-"+strconv.Itoa(i), 10*time.Second)
			mu.Lock()
			if err != nil {
				failed = append(failed, err.Error())
			} else {
				answers++
				worst = max(worst, time.Since(t0))
			}
			mu.Unlock()
		}
	})
	base := g.steady(20 * time.Second)
	t0 := time.Now()
	victim := run(t, g, sc)
	close(stop)
	wg.Wait()
	sc.Figure("attack duration", "%.1f s", time.Since(t0).Seconds())
	sc.Check(len(failed) == 0 && answers > 0, "another user's probe session answered throughout",
		"%d answers, slowest %v, failures %v", answers, worst.Round(time.Millisecond), failed)

	out, e, code := runSSH(g.SSH("bob", "bob", "echo new-login"), "", time.Minute)
	sc.Check(code == 0 && strings.TrimSpace(out) == "new-login", "a new login works after the attack", "exit %d, %q %q", code, out, e)
	sc.Check(g.Ready(context.Background()), "podgate is still ready", "ready %v", g.Ready(context.Background()))
	node, err := env.Client.CoreV1().Nodes().Get(context.Background(), localcluster.NodeName, metav1.GetOptions{})
	ready := err == nil && nodeReady(node)
	sc.Check(ready || kubetest.Kubeconfig() != localcluster.DefaultKubeconfig, "the node is still Ready", "err %v", err)

	if victim != "" {
		gone := pw.waitFor(2*time.Minute, func(podCounts) bool { return !pw.exists(victim) })
		sc.Check(gone, "the attacker's pod is deleted", "pod %s gone: %v", victim, gone)
	}
	clean := pw.waitFor(2*time.Minute, func(c podCounts) bool {
		return c[pool.StateClaimed] == 1 && c[pool.StateReleased] == 0 && c["terminating"] == 0 && c["other"] == 0
	})
	sc.Check(clean, "no pod is left over (only the probe's claimed pod)", "%v", pw.counts())
	// The attacker's pod is replaced by a fresh one whose stream may
	// open after either sample, and of another kind: the bound allows for
	// the prepared streams the two samples differ by.
	after := g.settle(base, 10, 5, time.Minute)
	if !sc.Check(base.within(after, 10, 5), "podgate's goroutines and fds are back to their baseline", "before %v, after %v", base, after) {
		t.Logf("goroutines by function:\n%s", g.dumpGoroutines())
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// exists reports whether a pod of that name is in the cache at all.
func (w *podWatch) exists(name string) bool {
	for _, p := range w.pods() {
		if p.Name == name {
			return true
		}
	}
	return false
}

// fields parses KEY=VALUE words.
func fields(out string) map[string]string {
	got := map[string]string{}
	for _, f := range strings.Fields(out) {
		if k, v, ok := strings.Cut(f, "="); ok {
			got[k] = v
		}
	}
	return got
}

// TestHostileForkBomb: a fork bomb stops at the pod's PID limit. It runs
// only on a node whose kubelet sets a podPidsLimit no larger than 4096:
// elsewhere the bomb would exhaust the node's PIDs.
func TestHostileForkBomb(t *testing.T) {
	if env := kubetest.Kubeconfig(); env == "" {
		t.Skip("needs a cluster")
	}
	limit := podPidsLimit(t)
	if limit <= 0 || limit > 4096 {
		t.Skipf("the node's kubelet sets podPidsLimit %d: a fork bomb would not be bounded", limit)
	}
	attackScenario(t, "fork bomb", nil, nil, func(t *testing.T, g *gate, sc *Scenario) string {
		// Only builtins after the bomb: nothing else can fork then. The
		// bomb lets go of the session's streams, or the session would
		// last as long as the bomb (the stream ends when its last writer
		// closes it).
		script := `echo pod=$HOSTNAME
mkfifo /tmp/hold && exec 3<>/tmp/hold
bomb() { bomb | bomb & }
bomb >/dev/null 2>&1 </dev/null
read -t 10 -u 3
set -- /proc/[0-9]*
echo procs=$#
exit 0
`
		// The session's exec stream outlives its shell while the bomb
		// runs, so the attacker closes the client once the count is in,
		// as a user would close the terminal; the release of the pod
		// ends the bomb.
		cmd := g.SSH("alice", "alice", "exec bash -s")
		cmd.Stdin = strings.NewReader(script)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			defer close(lines)
			scan := bufio.NewScanner(stdout)
			for scan.Scan() {
				lines <- scan.Text()
			}
		}()
		got := map[string]string{}
		deadline := time.After(90 * time.Second)
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				if k, v, ok := strings.Cut(l, "="); ok {
					got[k] = v
				}
				if got["procs"] != "" {
					break read
				}
			case <-deadline:
				break read
			}
		}
		_ = cmd.Process.Kill()
		go func() {
			for range lines {
			}
		}()
		_ = cmd.Wait()
		n, _ := strconv.Atoi(got["procs"])
		sc.Figure("processes in the bombed container after 10 s", "%s (podPidsLimit %d)", got["procs"], limit)
		sc.Check(n > 0, "the attacker's shell counted its processes 10 s into the bomb", "procs %q", got["procs"])
		sc.Check(n > 0 && n <= int(limit), "the bomb stopped at the pod's PID limit", "%d processes, limit %d", n, limit)
		return got["pod"]
	})
}

// TestHostileDiskFill: filling the home directory gets the pod evicted at
// its ephemeral-storage limit, and the user is told so.
func TestHostileDiskFill(t *testing.T) {
	attackScenario(t, "disk fill", nil, nil, func(t *testing.T, g *gate, sc *Scenario) string {
		script := `echo pod=$HOSTNAME
(echo x > /etc/podgate-write) 2>/dev/null && echo rootwrite=yes || echo rootwrite=no
(echo x > /var/tmp/podgate-write) 2>/dev/null && echo vartmpwrite=yes || echo vartmpwrite=no
mkfifo /tmp/hold && exec 3<>/tmp/hold
head -c 200000000 /dev/zero > ~/fill 2>/dev/null
echo wrote=$(stat -c %s ~/fill)
read -t 150 -u 3
echo not-evicted
`
		// The kubelet measures emptyDirs every volumeStatsAggPeriod (10 s
		// on the local cluster, 1 m by default) and checks for eviction
		// every 10 s.
		t0 := time.Now()
		out, e, code := runSSH(g.SSH("alice", "alice", "exec bash -s"), script, 4*time.Minute)
		got := fields(out)
		sc.Figure("what the attacker saw", "exit %d, stdout %q, stderr %q", code, strings.Join(strings.Fields(out), " "), e)
		sc.Figure("write → session ended", "%.1f s", time.Since(t0).Seconds())
		sc.Check(got["rootwrite"] == "no", "the root filesystem is read-only", "%q", got["rootwrite"])
		sc.Check(got["vartmpwrite"] == "yes", "/var/tmp is writable", "%q", got["vartmpwrite"])
		sc.Check(!strings.Contains(out, "not-evicted"), "the pod is evicted at its 64 MiB disk limit", "stdout %q", out)
		sc.Check(code != 0 && strings.Contains(e, "wrote more to disk than it may"), "the user is told the pod wrote more to disk than it may",
			"exit %d, stderr %q", code, e)
		return got["pod"]
	})
}

// TestHostileMemoryBomb: a process that eats memory is killed at the
// container's memory limit, and the user's shell says so.
func TestHostileMemoryBomb(t *testing.T) {
	attackScenario(t, "memory bomb", nil, nil, func(t *testing.T, g *gate, sc *Scenario) string {
		out, e, code := runSSH(g.SSH("alice", "alice", `echo pod=$HOSTNAME; exec bash -c 'timeout 60 tail /dev/zero; echo tail_exit=$?'`), "", 2*time.Minute)
		got := fields(out)
		sc.Figure("what the attacker saw", "exit %d, stdout %q, stderr %q", code, strings.Join(strings.Fields(out), " "), e)
		sc.Check(got["tail_exit"] == "137", "the memory hog is killed by the OOM killer (SIGKILL), not by the 60 s timeout", "tail exit %q", got["tail_exit"])
		sc.Check(strings.Contains(e, "Killed"), "the user's shell says it was killed", "stderr %q", e)
		return got["pod"]
	})
}

// podPidsLimit reads the node's kubelet configuration (configz, through the
// API server's node proxy) for its podPidsLimit; -1 means none.
func podPidsLimit(t *testing.T) int64 {
	t.Helper()
	env := kubetest.New(t)
	b, err := env.Client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", localcluster.NodeName, "proxy", "configz").DoRaw(context.Background())
	if err != nil {
		t.Skipf("reading the kubelet's configuration: %v", err)
	}
	var cfg struct {
		KubeletConfig struct {
			PodPidsLimit *int64 `json:"podPidsLimit"`
		} `json:"kubeletconfig"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("parsing configz: %v", err)
	}
	if cfg.KubeletConfig.PodPidsLimit == nil {
		return -1
	}
	return *cfg.KubeletConfig.PodPidsLimit
}

// holdProfile is the attacker's profile in the hold scenarios: a
// PodTemplate with short connection limits, so that the probe session in
// the default profile is not cut by them. It states no resources and
// inherits the default profile's.
func holdProfile() []*corev1.PodTemplate {
	pt := profileTemplate("hold", 1, corev1.Container{Image: localcluster.DebianImage, ImagePullPolicy: corev1.PullNever})
	pt.Annotations["podgate.io/idle-timeout"] = "5s"
	pt.Annotations["podgate.io/max-session"] = "20s"
	pt.Annotations["podgate.io/port-forwarding"] = "true"
	return []*corev1.PodTemplate{pt}
}

// sshHold runs OpenSSH with args as alice at INFO log level (so that the
// disconnect is reported) and returns its exit status, stderr and
// duration.
func sshHold(g *gate, deadline time.Duration, args ...string) (int, string, time.Duration) {
	opts := []string{"-F", "/dev/null", "-i", g.Keys["alice"], "-o", "IdentitiesOnly=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "LogLevel=INFO", "-p", g.Port}
	cmd := exec.Command("ssh", append(append(opts, args...), "alice+hold@127.0.0.1")...)
	if args[len(args)-1] != "-N" {
		// A command goes after the destination.
		cmd = exec.Command("ssh", append(append(opts, args[:len(args)-1]...), "alice+hold@127.0.0.1", args[len(args)-1])...)
	}
	t0 := time.Now()
	_, e, code := runSSH(cmd, "", deadline)
	return code, e, time.Since(t0)
}

// alicePod returns alice's claimed pod, waiting for it to appear.
func alicePod(pw *podWatch) string {
	var name string
	pw.waitFor(time.Minute, func(podCounts) bool {
		for _, p := range pw.pods() {
			if p.Annotations[pool.AnnUser] == "alice" && p.Labels[pool.LabelState] == pool.StateClaimed && p.DeletionTimestamp == nil {
				name = p.Name
				return true
			}
		}
		return false
	})
	return name
}

// TestHostileHoldNoSession: ssh -N (no session at all) is closed at the
// idle timeout of its profile (a PodTemplate's annotation), and its pod
// released.
func TestHostileHoldNoSession(t *testing.T) {
	attackScenario(t, "ssh -N hold", nil, holdProfile(), func(t *testing.T, g *gate, sc *Scenario) string {
		pw := watchPods(t, g.env)
		var victim string
		found := make(chan struct{})
		go func() { victim = alicePod(pw); close(found) }()
		code, e, d := sshHold(g, time.Minute, "-N")
		<-found
		sc.Figure("ssh -N held for", "%.1f s (idle timeout 5s)", d.Seconds())
		sc.Check(d < 15*time.Second, "the connection is closed at the idle timeout, not held", "%.1f s, exit %d", d.Seconds(), code)
		sc.Check(strings.Contains(e, "closed by remote host"), "the client is told the server closed the connection", "stderr %q", e)
		// The audit line is written once the connection is torn down,
		// which ends with the pod's release.
		pw.waitFor(time.Minute, func(podCounts) bool { return victim != "" && !pw.exists(victim) })
		audit, _ := os.ReadFile(g.AuditLog)
		sc.Check(strings.Contains(string(audit), `"user":"alice"`) && strings.Contains(string(audit), `"cut":"idle_timeout"`),
			"the connection's audit line names the cut", "idle_timeout in the audit log: %v", strings.Contains(string(audit), `"cut":"idle_timeout"`))
		return victim
	})
}

// TestHostileHoldForwardOnly: a connection used only for -L is closed at
// the idle timeout when the forward is quiet, and a busy session with a
// forward is ended at the maximum length with a goodbye line.
func TestHostileHoldForwardOnly(t *testing.T) {
	attackScenario(t, "forward-only hold", nil, holdProfile(), func(t *testing.T, g *gate, sc *Scenario) string {
		pw := watchPods(t, g.env)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		var victim string
		found := make(chan struct{})
		go func() { victim = alicePod(pw); close(found) }()
		code, e, d := sshHold(g, time.Minute, "-L", fmt.Sprintf("%d:localhost:8080", port), "-N")
		<-found
		sc.Figure("ssh -N -L held for", "%.1f s (idle timeout 5s)", d.Seconds())
		sc.Check(d < 15*time.Second, "a quiet forward-only connection is closed at the idle timeout", "%.1f s, exit %d, stderr %q", d.Seconds(), code, e)

		code, e, d = sshHold(g, time.Minute, "-L", fmt.Sprintf("%d:localhost:8080", port), "while :; do echo tick; sleep 1; done")
		sc.Figure("busy session with a forward held for", "%.1f s (max session 20s)", d.Seconds())
		sc.Check(d >= 15*time.Second && d < 35*time.Second, "a busy connection is ended at its maximum length", "%.1f s", d.Seconds())
		sc.Check(code == 1 && strings.Contains(e, "reached its maximum length of 20s"), "the user is told the maximum length was reached",
			"exit %d, stderr %q", code, e)
		return victim
	})
}
