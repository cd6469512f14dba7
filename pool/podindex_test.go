package pool

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podgate/podgate/pool/profile"
)

// scanView is the sync pass's view as it was before the index: a walk over
// every pod of the profile. It is the oracle the index is checked against.
// It returns the unreserved pods apart, in view order.
func (p *Pool) scanView(prof *profile.Profile, pods []*corev1.Pod, reps replicas, now time.Time) (view, []*corev1.Pod) {
	v := view{reserved: map[string]int{}}
	var unreserved []*corev1.Pod
	for _, pod := range pods {
		if pod.Labels[LabelProfile] != prof.Name || pod.DeletionTimestamp != nil || p.deleting.has(pod.Name) {
			continue
		}
		state, owner := pod.Labels[LabelState], pod.Labels[LabelOwner]
		switch {
		case state == StateClaimed:
			v.claimed++
			continue
		case state == StateParked:
			v.parked++
			continue
		case state == StateReserved && (reps.runs[owner] == "" || reps.runs[owner] != pod.Labels[LabelRun]):
			v.lapsed++
			continue
		case state != StateIdle && state != StateReserved:
			continue
		}
		ready := podReady(pod)
		switch {
		case !ready:
			v.warming++
		case state == StateReserved:
			v.readyReserved++
		default:
			v.readyIdle++
		}
		why := p.doomedBecause(prof, pod, ready, now)
		kept := why == removal{}
		switch {
		case !kept && state == StateIdle:
			v.doomed = append(v.doomed, doomed{pod, why})
		case !kept && owner == p.opts.ReplicaID && pod.Labels[LabelRun] == p.run:
			v.own = append(v.own, doomed{pod, why})
		case !kept:
		case state == StateReserved:
			v.reserved[owner]++
		default:
			unreserved = append(unreserved, pod)
		}
		if kept && !ready {
			v.starting++
		}
	}
	slices.SortFunc(unreserved, func(a, b *corev1.Pod) int {
		ra, rb := podReady(a), podReady(b)
		switch {
		case ra != rb && ra:
			return 1
		case ra != rb:
			return -1
		case byCreation(a, b):
			return -1
		case byCreation(b, a):
			return 1
		}
		return 0
	})
	v.doomed = sortDoomed(v.doomed)
	v.own = sortDoomed(v.own)
	return v, unreserved
}

func sortDoomed(ds []doomed) []doomed {
	slices.SortFunc(ds, func(a, b doomed) int {
		switch {
		case a.pod.Name < b.pod.Name:
			return -1
		case a.pod.Name > b.pod.Name:
			return 1
		}
		return 0
	})
	return ds
}

func names(pods []*corev1.Pod) []string {
	out := make([]string, len(pods))
	for i, pod := range pods {
		out[i] = pod.Name
	}
	return out
}

func newIndexTestPool(t testing.TB, prof *profile.Profile, opts Options) *Pool {
	t.Helper()
	cs := fake.NewClientset()
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(testNS))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := profile.NewStore(prof, f.Core().V1().PodTemplates().Informer(), log)
	if err != nil {
		t.Fatal(err)
	}
	opts.Namespace, opts.ReplicaID = testNS, "r1"
	p, err := New(cs, f.Core().V1().Pods().Informer(), f.Coordination().V1().Leases().Informer(), store, nil,
		clocktesting.NewFakeClock(time.Unix(1e9, 0)), log, prometheus.NewRegistry(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// randomPod makes a pod of prof (or of another profile) in a random state.
func randomPod(r *rand.Rand, name string, prof *profile.Profile, runs []string, now time.Time) *corev1.Pod {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	labels := map[string]string{
		LabelManaged: "true",
		LabelProfile: pick(prof.Name, prof.Name, prof.Name, "other"),
		LabelState:   pick(StateIdle, StateIdle, StateReserved, StateReserved, StateClaimed, StateParked, "released"),
		LabelHash:    pick(prof.Hash, prof.Hash, prof.Hash, "stale"),
	}
	if labels[LabelState] != StateIdle {
		labels[LabelOwner] = pick("r1", "r2", "r3", "")
		labels[LabelRun] = pick(runs...)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: testNS, Labels: labels,
		// Ties in creation time are common: the order breaks them by name.
		CreationTimestamp: metav1.NewTime(now.Add(-time.Duration(r.IntN(24)) * 5 * time.Minute)),
	}}
	pod.Status.Phase = corev1.PodPending
	switch r.IntN(6) {
	case 0, 1, 2:
		pod.Status.Phase = corev1.PodRunning
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	case 3:
		pod.Status.Phase = corev1.PodFailed
	}
	if r.IntN(15) == 0 {
		pod.DeletionTimestamp = &metav1.Time{Time: now}
	}
	return pod
}

// TestIndexMatchesScan drives random event sequences (adds, updates,
// deletes, state, owner, run, readiness and template changes, deletions
// in flight, the clock and the live runs) into the index, and checks after
// each that the pass's view equals the full scan's.
func TestIndexMatchesScan(t *testing.T) {
	prof := unitProfile(t)
	for seed := range uint64(10) {
		r := rand.New(rand.NewPCG(seed, 16))
		opts := Options{ReadyTimeout: 30 * time.Minute}
		if seed%2 == 0 {
			opts.MaxIdleAge = 90 * time.Minute
		}
		p := newIndexTestPool(t, prof, opts)
		runs := []string{p.run, "runA", "runB", ""}
		now := time.Unix(1e9, 0)
		pods := map[string]*corev1.Pod{}
		reps := replicas{runs: map[string]string{"r1": p.run, "r2": "runA"}}
		for step := range 400 {
			name := fmt.Sprintf("pod-%02d", r.IntN(40))
			switch op := r.IntN(20); {
			case op < 10:
				pod := randomPod(r, name, prof, runs, now)
				pods[name] = pod
				p.index.observe(pod, prof.Hash)
			case op < 13:
				delete(pods, name)
				p.index.forget(name)
				p.deleting.forget(name)
			case op < 15:
				p.deleting.start(name)
			case op < 16:
				p.deleting.forget(name)
			case op < 18:
				now = now.Add(time.Duration(r.IntN(20)) * time.Minute)
			case op < 19:
				reps = replicas{runs: map[string]string{"r1": p.run, pickRun(r, runs): "runA", "r3": pickRun(r, runs)}}
			default:
				// A new template: the index reclassifies on the next pass.
				prof2 := *prof
				prof2.Hash = []string{prof.Hash, "stale", "newer"}[r.IntN(3)]
				checkIndex(t, p, &prof2, pods, reps, now, seed, step)
			}
			checkIndex(t, p, prof, pods, reps, now, seed, step)
		}
	}
}

func pickRun(r *rand.Rand, runs []string) string { return runs[r.IntN(len(runs))] }

func checkIndex(t *testing.T, p *Pool, prof *profile.Profile, pods map[string]*corev1.Pod, reps replicas, now time.Time, seed uint64, step int) {
	t.Helper()
	all := slices.Collect(maps.Values(pods))
	asked := map[string]expectation{}
	for i := range 45 {
		asked[fmt.Sprintf("pod-%02d", i)] = expectation{}
	}
	got := p.view(prof, reps, inFlight{creating: asked, relabeling: asked}, now)
	want, wantOrder := p.scanView(prof, all, reps, now)
	wantIdle := map[string]bool{}
	for _, pod := range wantOrder {
		wantIdle[pod.Name] = true
	}
	at := fmt.Sprintf("seed %d step %d", seed, step)
	if g, w := names(got.unreserved.first(got.unreserved.Len())), names(wantOrder); !slices.Equal(g, w) {
		t.Fatalf("%s: unreserved %v, want %v", at, g, w)
	}
	var order []string
	got.unreserved.descend(func(pod *corev1.Pod) bool { order = append(order, pod.Name); return true })
	slices.Reverse(order)
	if g := names(got.unreserved.first(got.unreserved.Len())); !slices.Equal(g, order) {
		t.Fatalf("%s: first %v, descend reversed %v", at, g, order)
	}
	got.doomed, got.own = sortDoomed(got.doomed), sortDoomed(got.own)
	type counts struct{ claimed, parked, lapsed, readyIdle, readyReserved, warming, starting int }
	if g, w := (counts{got.claimed, got.parked, got.lapsed, got.readyIdle, got.readyReserved, got.warming, got.starting}),
		(counts{want.claimed, want.parked, want.lapsed, want.readyIdle, want.readyReserved, want.warming, want.starting}); g != w {
		t.Fatalf("%s: counts %+v, want %+v", at, g, w)
	}
	if !maps.Equal(got.reserved, want.reserved) {
		t.Fatalf("%s: reserved %v, want %v", at, got.reserved, want.reserved)
	}
	if !slices.EqualFunc(got.doomed, want.doomed, func(a, b doomed) bool { return a.pod.Name == b.pod.Name && a.why == b.why }) ||
		!slices.EqualFunc(got.own, want.own, func(a, b doomed) bool { return a.pod.Name == b.pod.Name && a.why == b.why }) {
		t.Fatalf("%s: doomed %v own %v, want %v %v", at, got.doomed, got.own, want.doomed, want.own)
	}
	for name := range asked {
		pod := pods[name]
		if shown := pod != nil && pod.Labels[LabelProfile] == prof.Name; got.shown[name] != shown {
			t.Fatalf("%s: shown[%s] = %v, want %v", at, name, got.shown[name], shown)
		}
		if got.idle[name] != wantIdle[name] {
			t.Fatalf("%s: idle[%s] = %v, want %v", at, name, got.idle[name], wantIdle[name])
		}
	}
}
