package pool

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/scheduler"
)

const testNS = "guests"

func idleReadyPod(name string, prof *profile.Profile) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: testNS, UID: types.UID("uid-" + name), ResourceVersion: "1",
			Labels: map[string]string{LabelManaged: "true", LabelProfile: prof.Name, LabelState: StateIdle, LabelHash: prof.Hash},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

// newUnitPool builds a pool over a fake clientset whose informer is synced,
// marked ready without Run (no leases, no leader election).
func newUnitPool(t *testing.T, cs *fake.Clientset, prof *profile.Profile) *Pool {
	t.Helper()
	return newUnitPoolWith(t, cs, prof, nil)
}

// newUnitPoolWith is newUnitPool with a stream preparer.
func newUnitPoolWith(t *testing.T, cs *fake.Clientset, prof *profile.Profile, prep Preparer) *Pool {
	t.Helper()
	return newUnitPoolAs(t, cs, prof, prep, "r1", nil)
}

// newUnitPoolAs is newUnitPoolWith for the replica id replica, with an
// informer factory of its own, as another replica has; setup, if set, sees
// the pool before its informer starts.
func newUnitPoolAs(t *testing.T, cs *fake.Clientset, prof *profile.Profile, prep Preparer, replica string, setup func(*Pool)) *Pool {
	t.Helper()
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(testNS))
	store, err := profile.NewStore(prof, f.Core().V1().PodTemplates().Informer(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cs, f.Core().V1().Pods().Informer(), f.Coordination().V1().Leases().Informer(), store, prep,
		clocktesting.NewFakeClock(time.Unix(1e9, 0)), slog.New(slog.NewTextHandler(io.Discard, nil)),
		prometheus.NewRegistry(), Options{Namespace: testNS, ReplicaID: replica})
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(p)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); f.Shutdown() })
	f.Start(stop)
	if !cache.WaitForCacheSync(stop, f.Core().V1().Pods().Informer().HasSynced, p.podsHandled, f.Coordination().V1().Leases().Informer().HasSynced) {
		t.Fatal("cache did not sync")
	}
	close(p.ready)
	return p
}

func unitProfile(t *testing.T) *profile.Profile {
	t.Helper()
	p, err := profile.FromConfig(profile.DefaultProfileConfig{Image: "img", PoolMin: 2, MaxWait: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestClaimConflictTriesNextCandidate: a 409 on the first PATCH (another
// replica won that pod) makes Claim move on to the next candidate, and the
// PATCH carries the cached resourceVersion as its precondition.
func TestClaimConflictTriesNextCandidate(t *testing.T) {
	prof := unitProfile(t)
	a, b := idleReadyPod("a", prof), idleReadyPod("b", prof)
	cs := fake.NewClientset(a, b)
	var patched []string
	conflicted := ""
	cs.PrependReactor("patch", "pods", func(act k8stesting.Action) (bool, runtime.Object, error) {
		pa := act.(k8stesting.PatchAction)
		patched = append(patched, pa.GetName())
		if !strings.Contains(string(pa.GetPatch()), `"resourceVersion":"1"`) {
			t.Errorf("claim patch %s lacks the resourceVersion precondition", pa.GetPatch())
		}
		if conflicted == "" {
			conflicted = pa.GetName()
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, pa.GetName(), errors.New("modified"))
		}
		return false, nil, nil
	})
	p := newUnitPool(t, cs, prof)
	pod, err := p.Claim(context.Background(), "", scheduler.Claim{Identity: scheduler.Identity{User: "alice"}, Session: "c1"})
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if len(patched) != 2 || pod.Ref.Name == conflicted || pod.Ref.Name != patched[1] {
		t.Errorf("patched %v, conflict on %q, got %q", patched, conflicted, pod.Ref.Name)
	}
	if got := metricValue(p.metrics.claims.WithLabelValues("default", "conflict")); got != 1 {
		t.Errorf("conflicts = %v", got)
	}
	if got := metricValue(p.metrics.claims.WithLabelValues("default", "hit")); got != 1 {
		t.Errorf("hits = %v", got)
	}
	// Both pods are now reserved or lost locally: the next claim is a
	// miss without any API call, never the same pod again.
	if _, err := p.Claim(context.Background(), "", scheduler.Claim{Session: "c2"}); err == nil && len(patched) > 3 {
		t.Errorf("extra patches %v", patched)
	}
}

// TestClaimMissAndErrors: no candidates is ErrNoIdlePod without an API
// call; a server error is ErrClusterUnavailable; stale-hash pods are never
// handed out.
func TestClaimMissAndErrors(t *testing.T) {
	prof := unitProfile(t)
	stale := idleReadyPod("stale", prof)
	stale.Labels[LabelHash] = "old"
	cs := fake.NewClientset(stale)
	p := newUnitPool(t, cs, prof)
	if _, err := p.Claim(context.Background(), "", scheduler.Claim{}); !errors.Is(err, scheduler.ErrNoIdlePod) {
		t.Errorf("Claim with only a stale pod: %v", err)
	}
	if _, err := p.Claim(context.Background(), "nope", scheduler.Claim{}); !errors.Is(err, scheduler.ErrUnknownProfile) {
		t.Errorf("unknown profile: %v", err)
	}
	for _, a := range cs.Actions() {
		if a.GetVerb() == "patch" {
			t.Errorf("unexpected %v", a)
		}
	}

	cs2 := fake.NewClientset(idleReadyPod("a", prof))
	cs2.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd down")
	})
	p2 := newUnitPool(t, cs2, prof)
	if _, err := p2.Claim(context.Background(), "", scheduler.Claim{}); !errors.Is(err, scheduler.ErrClusterUnavailable) {
		t.Errorf("server error: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	var h health
	h.reset("h1")
	now := time.Unix(0, 0)
	if h.degraded() || !h.cautious() || !h.mayCreate(now) {
		t.Fatal("fresh health: want not degraded, cautious until proven, may create")
	}
	var waits []time.Duration
	for range 6 {
		h.fail(now, failImagePull, time.Second, 8*time.Second)
		waits = append(waits, h.retryAt.Sub(now))
		if h.mayCreate(now) || !h.mayCreate(h.retryAt) {
			t.Fatal("backoff not applied")
		}
	}
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	for i, w := range want {
		if waits[i] != w*time.Second {
			t.Errorf("waits = %v, want %v seconds", waits, want)
			break
		}
	}
	if !h.degraded() || h.last.Reason != ReasonImagePull {
		t.Errorf("degraded=%v reason=%q", h.degraded(), h.last.Reason)
	}
	h.ready()
	if h.degraded() || h.cautious() || !h.mayCreate(now) {
		t.Error("a Ready pod did not clear the backoff")
	}
	h.reset("h2")
	if h.proven {
		t.Error("a new template inherited the old one's proof")
	}
}

func TestSizer(t *testing.T) {
	now := time.Unix(0, 0)
	s := newSizer(2, 5, now)
	for i := range 5 {
		s.miss(now.Add(time.Duration(i) * time.Second))
	}
	if s.target != 5 {
		t.Fatalf("target after 5 misses = %d, want capped at 5", s.target)
	}
	s.tick(now.Add(5*time.Minute), 10*time.Minute)
	if s.target != 5 {
		t.Errorf("shrank before shrinkAfter: %d", s.target)
	}
	at := now.Add(4 * time.Second)
	for want := 4; want >= 2; want-- {
		at = at.Add(10 * time.Minute)
		s.tick(at, 10*time.Minute)
		if s.target != want {
			t.Errorf("after quiet period target = %d, want %d", s.target, want)
		}
	}
	s.tick(at.Add(time.Hour), 10*time.Minute)
	if s.target != 2 {
		t.Errorf("shrank below min: %d", s.target)
	}
	s.setBounds(3, 4)
	if s.target != 3 {
		t.Errorf("setBounds kept target %d outside 3..4", s.target)
	}
}

func TestPodFailure(t *testing.T) {
	waiting := func(reason string) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}},
		}}}}
	}
	for reason, want := range map[string]string{
		"ErrImagePull": ReasonImagePull, "ImagePullBackOff": ReasonImagePull,
		"CrashLoopBackOff": ReasonCrash, "CreateContainerConfigError": ReasonConfig,
	} {
		if f, ok := podFailure(waiting(reason)); !ok || f.Reason != want {
			t.Errorf("%s: %v %v", reason, f, ok)
		}
	}
	if _, ok := podFailure(waiting("ContainerCreating")); ok {
		t.Error("ContainerCreating is not a failure")
	}
	unsched := &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{
		Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
	}}}}
	if f, ok := podFailure(unsched); !ok || f.Reason != ReasonUnschedulable {
		t.Errorf("unschedulable: %v", f)
	}
	// The scheduler's own wording: a full node and a node whose kubelet
	// stopped are both unschedulable, but users are told which.
	for msg, want := range map[string]failure{
		"0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.":                                             failUnschedulable,
		"0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.": failNoReadyNode,
		"0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.":                                                                                    failNoReadyNode,
		"0/2 nodes are available: 1 Too many pods, 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }.":                                                                 failUnschedulable,
	} {
		unsched.Status.Conditions[0].Message = msg
		if f, ok := podFailure(unsched); !ok || f != want {
			t.Errorf("unschedulable %q: %q, want %q", msg, f.UserText, want.UserText)
		}
	}
	gone := waiting("ErrImagePull")
	gone.DeletionTimestamp = &metav1.Time{}
	if _, ok := podFailure(gone); ok {
		t.Error("a pod being deleted is not a failure")
	}
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"conn-1":                       "conn-1",
		"192.0.2.1:22/x":               "192.0.2.1_22_x",
		"-edge-":                       "edge",
		string(make([]byte, 100)) + "": "",
	} {
		if got := labelValue(in); got != want {
			t.Errorf("labelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFailureDetail: the operator log says what Kubernetes said.
func TestFailureDetail(t *testing.T) {
	p := &corev1.Pod{Status: corev1.PodStatus{
		Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes are available: 1 Insufficient cpu."}},
		ContainerStatuses: []corev1.ContainerStatus{
			{Name: "a", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "pull access denied"}}},
			{Name: "b", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, Reason: "Error"}}},
		},
	}}
	want := "0/1 nodes are available: 1 Insufficient cpu.; a: pull access denied; b: exited 3 (Error)"
	if got := failureDetail(p); got != want {
		t.Errorf("failureDetail = %q, want %q", got, want)
	}
	if got := failureDetail(&corev1.Pod{}); got != "" {
		t.Errorf("failureDetail of a bare pod = %q", got)
	}
}
