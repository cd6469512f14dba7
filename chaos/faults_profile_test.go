package chaos

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/pool"
)

// brokenProfile is a profile whose pods cannot start, and what the user
// and the operator should be told.
type brokenProfile struct {
	name, scenario string
	container      corev1.Container
	reason         string // the podgate_pod_create_failures_total reason
	userText       string // what the refused user reads
}

// TestFaultBrokenProfiles defines profiles whose pods cannot start next to
// the default profile: an image that cannot be pulled, a container that
// crash-loops, and a CPU request no node can hold (the node out of
// capacity). Held, for each: the profile is marked degraded (metric and a
// log line), a login fails fast with the reason, pod creation backs off
// with no pile-up of pods, and the default profile is untouched.
func TestFaultBrokenProfiles(t *testing.T) {
	env := kubetest.New(t)
	g := startFaultGate(t, env, "a", nil, 2, "PODGATE_POOL_MIN=2")
	w := watchPods(t, env)
	profiles := []brokenProfile{{
		name: "noimage", scenario: "a profile whose image cannot be pulled",
		container: corev1.Container{Image: "localhost/podgate-missing:never", ImagePullPolicy: corev1.PullIfNotPresent},
		reason:    pool.ReasonImagePull, userText: "the image for this environment cannot be pulled",
	}, {
		name: "crashloop", scenario: "a profile whose pods crash-loop",
		container: corev1.Container{Image: kubetest.BusyboxImage, ImagePullPolicy: corev1.PullNever, Command: []string{"sh", "-c", "echo boom; exit 3"}},
		reason:    pool.ReasonCrash, userText: "this environment's container exits at start",
	}, {
		name: "huge", scenario: "the node out of capacity (a CPU request no node can hold)",
		container: corev1.Container{Image: kubetest.DebianImage, ImagePullPolicy: corev1.PullNever, Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64")},
		}},
		reason: pool.ReasonUnschedulable, userText: "no node has room for this environment",
	}}

	// Every pod each profile ever had, and the most alive at once.
	var (
		mu      sync.Mutex
		created = map[string]map[string]bool{}
		peak    = map[string]int{}
	)
	note := func(o any) {
		p, ok := o.(*corev1.Pod)
		if !ok {
			return
		}
		prof := p.Labels[pool.LabelProfile]
		mu.Lock()
		defer mu.Unlock()
		if created[prof] == nil {
			created[prof] = map[string]bool{}
		}
		created[prof][p.Name] = true
		alive := 0
		for _, q := range w.pods() {
			if q.Labels[pool.LabelProfile] == prof && q.DeletionTimestamp == nil && q.Status.Phase != corev1.PodSucceeded && q.Status.Phase != corev1.PodFailed {
				alive++
			}
		}
		peak[prof] = max(peak[prof], alive)
	}
	if _, err := w.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: note, UpdateFunc: func(_, o any) { note(o) }}); err != nil {
		t.Fatal(err)
	}
	for _, bp := range profiles {
		pt := profileTemplate(bp.name, 1, bp.container)
		if _, err := env.Client.CoreV1().PodTemplates(env.Namespace).Create(context.Background(), pt, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// The profiles run side by side; each records its own scenario.
	var wg sync.WaitGroup
	for _, bp := range profiles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			brokenScenario(t, g, bp, func() (int, int) {
				mu.Lock()
				defer mu.Unlock()
				return len(created[bp.name]), peak[bp.name]
			})
		}()
	}
	wg.Wait()

	sc := NewScenario(t, "faults", "other profiles are untouched by broken ones")
	out, errOut, code := runSSH(g.SSH("alice", "alice", "echo default-ok"), "", time.Minute)
	sc.Check(code == 0 && strings.TrimSpace(out) == "default-ok", "the default profile still serves logins", "exit %d, %q %q", code, out, errOut)
	m, err := g.Scrape(context.Background())
	if err == nil {
		sc.Check(m.Value("podgate_profile_degraded", "profile", "default") == 0, "the default profile is not degraded", "podgate_profile_degraded{profile=default} = %v", m.Value("podgate_profile_degraded", "profile", "default"))
	}
	atTarget := w.waitFor(time.Minute, func(podCounts) bool { return w.readyIdle("default") >= 2 })
	sc.Check(atTarget, "the default pool is at target", "ready idle %d", w.readyIdle("default"))
}

// brokenScenario checks one broken profile. It must not call t.Fatal: it
// runs in its own goroutine.
func brokenScenario(t *testing.T, g *gate, bp brokenProfile, pods func() (total, peak int)) {
	sc := NewScenario(t, "faults", bp.scenario)
	metric := func() float64 { return g.metric("podgate_profile_degraded", "profile", bp.name) }
	// Degradation shows up in the metric; the metric has no event to wait
	// on, so this is a bounded poll.
	t0 := time.Now()
	deadline := t0.Add(3 * time.Minute)
	for metric() != 1 && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}
	sc.Figure("profile defined → degraded", "%.1f s", time.Since(t0).Seconds())
	sc.Check(metric() == 1, "the profile is marked degraded (metric)", "podgate_profile_degraded{profile=%q} = %v", bp.name, metric())
	failures := g.metric("podgate_pod_create_failures_total", "profile", bp.name, "reason", bp.reason)
	sc.Check(failures >= 1, "the failure is counted with its reason", "podgate_pod_create_failures_total{reason=%q} = %v", bp.reason, failures)
	logLine := fmt.Sprintf("profile=%s", bp.name)
	logged := false
	for _, l := range strings.Split(g.Log.String(), "\n") {
		if strings.Contains(l, "pod cannot start") && strings.Contains(l, logLine) && strings.Contains(l, bp.reason) {
			logged = true
		}
	}
	sc.Check(logged, "podgate logs a line naming the profile and the reason", "%q with %s and %s: %v", "pod cannot start", logLine, bp.reason, logged)

	const maxWait = 60 * time.Second // the template's podgate.io/max-wait
	start := time.Now()
	_, errOut, code := runSSH(g.SSH("alice", "alice+"+bp.name, "echo should-not-run"), "", 2*maxWait)
	took := time.Since(start)
	msg := withoutProgressLines(errOut)
	sc.Figure("login to refusal", "%.2f s (max wait %v)", took.Seconds(), maxWait)
	sc.Figure("what the user saw", "exit %d, %q", code, msg)
	sc.Check(code > 0, "the login is refused", "exit %d", code)
	sc.Check(strings.Contains(msg, bp.userText), "the user is told the reason", "%q", msg)
	sc.Check(code > 0 && took < maxWait/2, "the refusal is fast (well inside the max wait), not a wait for a pod that cannot come", "%.2f s", took.Seconds())

	// Watch creation for a while: backoff spaces the attempts out and only
	// one probe pod is alive at a time.
	window := time.Duration(Size(30, 90)) * time.Second
	before, _ := pods()
	time.Sleep(window)
	after, peak := pods()
	sc.Figure("pods created", "%d in all, %d during a %v window", after, after-before, window)
	sc.Figure("most pods alive at once", "%d", peak)
	// Without backoff the pool would make a pod every resync (1 s); with a
	// 2 s base doubling to 2 min, a window of 30–90 s fits at most ~7.
	sc.Check(after-before <= 7, "pod creation backs off", "%d pods in %v", after-before, window)
	sc.Check(peak <= 2, "no pile-up of pods", "at most %d alive at once", peak)
}
