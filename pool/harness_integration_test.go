package pool

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/pool/profile"
)

// fastOptions are pool options scaled down so the integration suite runs
// in minutes: short Leases, quick backoff.
func fastOptions(ns, id string) Options {
	return Options{
		Namespace:             ns,
		ReplicaID:             id,
		LeaderLeaseDuration:   4 * time.Second,
		LeaderRenewDeadline:   3 * time.Second,
		LeaderRetryPeriod:     500 * time.Millisecond,
		LivenessLeaseDuration: 3 * time.Second,
		LivenessRenew:         time.Second,
		ReadyTimeout:          2 * time.Minute, // the shared test node is slow under load
		BackoffBase:           time.Second,
		BackoffMax:            8 * time.Second,
		Resync:                500 * time.Millisecond,
	}
}

// busybox returns a default-style profile on the busybox image.
func busybox(t testing.TB, name string, size int) *profile.Profile {
	t.Helper()
	p, err := profile.FromConfig(profile.DefaultProfileConfig{
		Name: name, Image: kubetest.BusyboxImage, PoolMin: size, PoolMax: size, MaxWait: 2 * time.Minute,
		// Tiny requests: the test node has 2 CPUs shared with other tests.
		CPURequest: "1m", MemRequest: "8Mi",
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// replica is one running pool, as cmd would wire it.
type replica struct {
	pool   *Pool
	store  *profile.Store
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}

	// mu protects next, closed and replaced at every event of the pool's
	// own pod informer (whose cache is updated before handlers run).
	mu   sync.Mutex
	next chan struct{}
}

// wait returns a channel closed at the pool's next pod event.
func (r *replica) wait() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next
}

// hasIdle reports whether the replica would find a pod to hand out: one of
// its reserved pods or an unreserved candidate.
func (r *replica) hasIdle() bool {
	e, _ := r.store.Get("")
	return e.Profile != nil && (r.pool.reserved.handable(e.Profile.Name) > 0 || len(r.pool.candidates(e.Profile)) > 0)
}

func (r *replica) event() {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.next)
	r.next = make(chan struct{})
}

func testLogger() *slog.Logger {
	lvl := slog.LevelWarn
	if testing.Verbose() {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// startReplica wires informers, a profile store and a pool like cmd does,
// and runs them until the test ends or stop is called.
func startReplica(t *testing.T, env *kubetest.Env, id string, def *profile.Profile, opts Options, execer Preparer) *replica {
	t.Helper()
	factory := func(selector string) informers.SharedInformerFactory {
		return informers.NewSharedInformerFactoryWithOptions(env.Client, 0,
			informers.WithNamespace(env.Namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	}
	podF, leaseF, ptF := factory(ManagedSelector), factory(ReplicaSelector), factory(profile.LabelProfile)
	log := testLogger()
	store, err := profile.NewStore(def, ptF.Core().V1().PodTemplates().Informer(), log)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	p, err := New(env.Client, podF.Core().V1().Pods().Informer(), leaseF.Coordination().V1().Leases().Informer(),
		store, execer, clock.RealClock{}, log, reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{pool: p, store: store, reg: reg, cancel: cancel, done: make(chan struct{}), next: make(chan struct{})}
	if _, err := podF.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { r.event() }, UpdateFunc: func(any, any) { r.event() }, DeleteFunc: func(any) { r.event() },
	}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []informers.SharedInformerFactory{podF, leaseF, ptF} {
		f.Start(ctx.Done())
	}
	storeDone := make(chan struct{})
	go func() { defer close(storeDone); _ = store.Run(ctx) }()
	go func() {
		defer close(r.done)
		if err := p.Run(ctx); err != nil {
			t.Errorf("pool %s: %v", id, err)
		}
		<-storeDone
		for _, f := range []informers.SharedInformerFactory{podF, leaseF, ptF} {
			f.Shutdown()
		}
	}()
	t.Cleanup(r.stop)
	return r
}

// stop ends the replica without releasing anything it holds, like a crash
// as far as the cluster can tell (the pool never deletes its Lease).
func (r *replica) stop() {
	r.cancel()
	<-r.done
}

// podWatch is the test's own view of the namespace's managed pods, fed by
// an informer, so that tests wait on events instead of sleeping.
type podWatch struct {
	store   cache.Store
	changed chan struct{}

	// mu protects the following.
	mu sync.Mutex
	// maxIdle is the most idle pods (Ready or not, not being deleted)
	// of any one profile seen at once; uids is every pod ever seen.
	maxIdle map[string]int
	uids    map[string]map[types.UID]struct{}
}

// informManagedPods runs an informer on the managed pods of env's
// namespace until the test ends. handler gets the informer's store before
// it starts and returns the function to call after every pod event; the
// call returns once the informer has synced.
func informManagedPods(t *testing.T, env *kubetest.Env, what string, handler func(cache.Store) func()) {
	t.Helper()
	f := informers.NewSharedInformerFactoryWithOptions(env.Client, 0, informers.WithNamespace(env.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = ManagedSelector }))
	inf := f.Core().V1().Pods().Informer()
	on := handler(inf.GetStore())
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { on() }, UpdateFunc: func(any, any) { on() }, DeleteFunc: func(any) { on() },
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	f.Start(stop)
	t.Cleanup(func() { close(stop); f.Shutdown() })
	if !cache.WaitForCacheSync(stop, inf.HasSynced) {
		t.Fatalf("%s did not sync", what)
	}
}

func watchPods(t *testing.T, env *kubetest.Env) *podWatch {
	t.Helper()
	var w *podWatch
	informManagedPods(t, env, "test pod watch", func(store cache.Store) func() {
		w = &podWatch{store: store, changed: make(chan struct{}, 1),
			maxIdle: map[string]int{}, uids: map[string]map[types.UID]struct{}{}}
		return w.poke
	})
	return w
}

// poke records the pods in the store after an event and signals changed.
func (w *podWatch) poke() {
	idle := map[string]int{}
	w.mu.Lock()
	for _, p := range w.pods() {
		prof := p.Labels[LabelProfile]
		if w.uids[prof] == nil {
			w.uids[prof] = map[types.UID]struct{}{}
		}
		w.uids[prof][p.UID] = struct{}{}
		if p.DeletionTimestamp == nil && Spare(p) {
			idle[prof]++
		}
	}
	for prof, n := range idle {
		w.maxIdle[prof] = max(w.maxIdle[prof], n)
	}
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// created returns how many distinct pods of a profile were seen so far.
func (w *podWatch) created(profile string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.uids[profile])
}

// peakIdle returns the most idle pods of a profile seen at once.
func (w *podWatch) peakIdle(profile string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxIdle[profile]
}

func (w *podWatch) pods() []*corev1.Pod {
	var out []*corev1.Pod
	for _, o := range w.store.List() {
		out = append(out, o.(*corev1.Pod))
	}
	return out
}

// until waits for cond to hold over the current pods, re-checking on every
// pod event. limit only guards against a hang; it is not an assertion on
// speed.
func (w *podWatch) until(t *testing.T, limit time.Duration, what string, cond func([]*corev1.Pod) bool) {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for !cond(w.pods()) {
		select {
		case <-w.changed:
		case <-deadline.C:
			t.Fatalf("gave up after %s waiting for %s; pods: %s", limit, what, summary(w.pods()))
		}
	}
}

// count returns how many pods match state. StateIdle counts the pool's
// spare pods, unreserved or reserved, and only Ready ones.
func count(pods []*corev1.Pod, state string) int {
	n := 0
	for _, p := range pods {
		switch {
		case p.DeletionTimestamp != nil:
		case state == StateIdle && Spare(p) && podReady(p):
			n++
		case state != StateIdle && p.Labels[LabelState] == state:
			n++
		}
	}
	return n
}

func summary(pods []*corev1.Pod) string {
	s := ""
	for _, p := range pods {
		del := ""
		if p.DeletionTimestamp != nil {
			del = ",deleting"
		}
		s += p.Name + "(" + p.Labels[LabelState] + "," + p.Labels[LabelOwner] + "," + string(p.Status.Phase) + boolStr(podReady(p), ",ready", "") + del + ") "
	}
	return s
}

func boolStr(b bool, t, f string) string {
	if b {
		return t
	}
	return f
}
