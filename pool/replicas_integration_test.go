package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/scheduler"
)

// TestIntegrationRaceNoDoubleHandout has two replicas race 150 claim
// attempts against a pool of 20 that refills underneath them: a miss waits
// for the pool's next change and tries again, a hit holds its pod to the
// end. No pod may be handed out twice, and the API server must agree with
// every claimer about who owns its pod. The peak idle count shows that the
// single leader never overshoots the target.
func TestIntegrationRaceNoDoubleHandout(t *testing.T) {
	const (
		poolSize = 20
		// Every hit holds its pod to the end, so the node must start
		// about attempts pods during the race: 300 took the 2-CPU test
		// node past the pods' 2-minute readiness timeout in one CI run.
		attempts = 150
		workers  = 8 // per replica
	)
	env := kubetest.New(t)
	w := watchPods(t, env)
	// Both replicas live throughout: their liveness Leases are the
	// default 15 s rather than the suite's 3 s, so that an API server too
	// loaded to renew a Lease within 3 s (seen on the shared 2-CPU node)
	// does not turn the race into a reap of one replica's pods, which
	// TestIntegrationReplicaDeathReaped covers.
	opts := func(id string) Options {
		o := fastOptions(env.Namespace, id)
		o.LivenessLeaseDuration, o.LivenessRenew = 15*time.Second, 5*time.Second
		return o
	}
	a := startReplica(t, env, "ra", busybox(t, "default", poolSize), opts("ra"), nil)
	b := startReplica(t, env, "rb", busybox(t, "default", poolSize), opts("rb"), nil)
	w.until(t, 120*time.Second, "a full pool", func(p []*corev1.Pod) bool { return count(p, StateIdle) == poolSize })

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	type hit struct {
		pod     *scheduler.Pod
		replica *replica
		session string
	}
	var (
		mu     sync.Mutex
		hits   = map[types.UID]hit{}
		left   = attempts
		errs   []error
		wg     sync.WaitGroup
		misses int
	)
	take := func() bool {
		mu.Lock()
		defer mu.Unlock()
		left--
		return left >= 0
	}
	start := make(chan struct{})
	for _, r := range []*replica{a, b} {
		for i := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for n := 0; take(); n++ {
					session := fmt.Sprintf("%s-%d-%d", r.pool.opts.ReplicaID, i, n)
					next := r.wait()
					pod, err := r.pool.Claim(ctx, "", claimFor("u-"+session, session))
					if err == nil {
						err = pod.Record.Wait(ctx)
					}
					mu.Lock()
					switch {
					case errors.Is(err, scheduler.ErrNoIdlePod):
						misses++
					case err != nil:
						errs = append(errs, err)
					default:
						if prev, dup := hits[types.UID(pod.UID)]; dup {
							errs = append(errs, fmt.Errorf("pod %s handed out as %s and %s", pod.Ref.Name, prev.session, session))
						}
						hits[types.UID(pod.UID)] = hit{pod, r, session}
					}
					mu.Unlock()
					// After a miss or a lost race, wait until the
					// replica sees an idle Ready pod again.
					for err != nil && !r.hasIdle() {
						select {
						case <-next:
							next = r.wait()
						case <-ctx.Done():
							return
						}
					}
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	if ctx.Err() != nil {
		mu.Lock()
		t.Errorf("the race did not finish in time: %d of %d attempts left", max(left, 0), attempts)
		mu.Unlock()
	}
	// The checks below get time of their own, however long the race took.
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, err := range errs {
		t.Error(err)
	}
	if len(hits) <= poolSize {
		t.Errorf("%d hits against a pool of %d: the pool did not refill during the race", len(hits), poolSize)
	}
	list, err := env.Client.CoreV1().Pods(env.Namespace).List(ctx, metav1.ListOptions{LabelSelector: ManagedSelector})
	if err != nil {
		t.Fatal(err)
	}
	server := map[types.UID]corev1.Pod{}
	for _, p := range list.Items {
		server[p.UID] = p
	}
	for uid, h := range hits {
		p, ok := server[uid]
		switch {
		case !ok:
			t.Errorf("claimed pod %s is gone", h.pod.Ref.Name)
		case p.Labels[LabelState] != StateClaimed || p.Labels[LabelOwner] != h.replica.pool.opts.ReplicaID || p.Labels[LabelSession] != h.session:
			t.Errorf("pod %s claimed as %s/%s, but the server says %v", p.Name, h.replica.pool.opts.ReplicaID, h.session, p.Labels)
		}
	}
	if peak := w.peakIdle("default"); peak > poolSize+1 {
		t.Errorf("idle pods peaked at %d, target %d: the pool overshot", peak, poolSize)
	}
	conflicts := metricValue(a.pool.metrics.claims.WithLabelValues("default", "conflict")) +
		metricValue(b.pool.metrics.claims.WithLabelValues("default", "conflict"))
	t.Logf("%d attempts: %d hits, %d misses, %d lost races (409); peak idle %d", attempts, len(hits), misses, int(conflicts), w.peakIdle("default"))
	for _, h := range hits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.replica.pool.Release(ctx, h.pod); err != nil {
				t.Errorf("Release: %v", err)
			}
		}()
	}
	wg.Wait()
}

// TestIntegrationReplicaDeathReaped stops one of two replicas without any
// cleanup. The survivor must delete the dead replica's claimed pods once
// its liveness Lease expires, and never its own.
func TestIntegrationReplicaDeathReaped(t *testing.T) {
	env := kubetest.New(t)
	w := watchPods(t, env)
	a := startReplica(t, env, "ra", busybox(t, "default", 3), fastOptions(env.Namespace, "ra"), nil)
	b := startReplica(t, env, "rb", busybox(t, "default", 3), fastOptions(env.Namespace, "rb"), nil)
	w.until(t, 120*time.Second, "3 idle pods", func(p []*corev1.Pod) bool { return count(p, StateIdle) == 3 })

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var aPods []*scheduler.Pod
	for i := range 2 {
		p, err := a.pool.Claim(ctx, "", claimFor("alice", fmt.Sprint("a", i)))
		if err != nil {
			t.Fatal(err)
		}
		aPods = append(aPods, p)
	}
	bPod, err := b.pool.Claim(ctx, "", claimFor("bob", "b0"))
	if err != nil {
		t.Fatal(err)
	}
	a.stop()
	w.until(t, 60*time.Second, "the dead replica's pods reaped", func(p []*corev1.Pod) bool {
		for _, x := range p {
			if x.Labels[LabelOwner] == "ra" && x.DeletionTimestamp == nil {
				return false
			}
		}
		return true
	})
	if !b.pool.Leading() {
		t.Error("the survivor does not lead")
	}
	state := map[string]string{}
	for _, p := range w.pods() {
		state[p.Name] = "live"
		if p.DeletionTimestamp != nil {
			state[p.Name] = "deleting"
		}
	}
	if state[bPod.Ref.Name] != "live" {
		t.Errorf("the survivor's own claimed pod is %q", state[bPod.Ref.Name])
	}
	for _, p := range aPods {
		if state[p.Ref.Name] == "live" {
			t.Errorf("dead replica's pod %s still alive", p.Ref.Name)
		}
	}
}

// probesWithin returns the most idle probe pods the backoff lets the leader
// create in window: the first at once, then one per wait, where the k-th
// wait is base doubled k-1 times, capped at ceiling (see health.fail). More
// failures (cold pods failing too) only lengthen the waits, so this is an
// upper bound.
func probesWithin(window, base, ceiling time.Duration) int {
	n, spent, wait := 1, time.Duration(0), base
	for {
		spent += min(wait, ceiling)
		if spent > window {
			return n
		}
		n++
		wait *= 2
	}
}

// TestIntegrationUnpullableImage proves that a profile whose image cannot
// be pulled refuses users fast with that reason, is marked degraded, and
// over a full minute costs no more pods than its backoff schedule allows
// instead of churning.
func TestIntegrationUnpullableImage(t *testing.T) {
	const window = time.Minute
	env := kubetest.New(t)
	w := watchPods(t, env)
	prof := busybox(t, "broken", 5)
	prof.Template.Spec.Containers[0].Image = "localhost/podgate-does-not-exist:local"
	opts := fastOptions(env.Namespace, "r1")
	start := time.Now()
	r := startReplica(t, env, "r1", prof, opts, nil)

	ctx, cancel := context.WithTimeout(context.Background(), window+15*time.Second)
	defer cancel()
	coldCalls := 0
	create := func(user string) error {
		coldCalls++
		_, err := r.pool.AwaitPod(ctx, "broken", claimFor(user, user), nil)
		return err
	}
	begin := time.Now()
	err := create("carol")
	waited := time.Since(begin)
	var ref *scheduler.Refusal
	if !errors.Is(err, ErrImagePull) || !errors.Is(err, scheduler.ErrProfileDegraded) || !errors.As(err, &ref) {
		t.Fatalf("Create on a broken image: %v, want a Refusal wrapping ErrImagePull and ErrProfileDegraded", err)
	}
	// Fast means on the pull failure, not at the end of the wait budget.
	if waited >= prof.MaxWait {
		t.Errorf("refused after %s, the whole max wait of %s", waited, prof.MaxWait)
	}
	if msg := scheduler.UserMessage(err); msg != "podgate: the image for this environment cannot be pulled" {
		t.Errorf("user message %q", msg)
	}
	if got := metricValue(r.pool.metrics.degraded.WithLabelValues("broken")); got != 1 {
		t.Errorf("podgate_profile_degraded = %v, want 1", got)
	}
	// While degraded, a second user is refused at once or after one
	// more probe; either way with the same reason.
	if err := create("dave"); !errors.Is(err, ErrImagePull) {
		t.Errorf("second Create: %v, want ErrImagePull", err)
	}

	// Observe the pool for the rest of the minute: creations must follow
	// the backoff.
	timer := time.NewTimer(window - time.Since(start))
	<-timer.C
	created := w.created("broken")
	bound := probesWithin(window, opts.BackoffBase, opts.BackoffMax) + coldCalls
	if created > bound {
		t.Errorf("%d pods created in %s for a broken profile, the backoff (%s doubling to %s) allows %d: the pool churns",
			created, window, opts.BackoffBase, opts.BackoffMax, bound)
	}
	if created < 2 {
		t.Errorf("%d pods created in %s: the pool gave up instead of backing off", created, window)
	}
	failures := metricValue(r.pool.metrics.createFailures.WithLabelValues("broken", ReasonImagePull))
	if failures < 1 {
		t.Errorf("podgate_pod_create_failures_total{reason=ImagePull} = %v", failures)
	}
	if got := metricValue(r.pool.metrics.degraded.WithLabelValues("broken")); got != 1 {
		t.Errorf("podgate_profile_degraded = %v after %s, want 1", got, window)
	}
	t.Logf("%d pods (bound %d), %v ImagePull failures in %s; first refusal after %s", created, bound, failures, window, waited.Round(time.Millisecond))
}
