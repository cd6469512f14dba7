package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/scheduler"
)

// fakePrepared is a prepared stream that only records being closed.
type fakePrepared struct {
	tty    bool
	closed atomic.Bool
}

var _ scheduler.Prepared = (*fakePrepared)(nil)

func (f *fakePrepared) TTY() bool { return f.tty }
func (f *fakePrepared) Run(context.Context, scheduler.Command) (scheduler.ExitStatus, error) {
	return scheduler.ExitStatus{}, nil
}
func (f *fakePrepared) Close() error { f.closed.Store(true); return nil }

// fakePreparer opens fakePrepared streams and records into which pods.
type fakePreparer struct {
	mu     sync.Mutex
	opened map[string]*fakePrepared
}

func (f *fakePreparer) Prepare(_ context.Context, pod scheduler.PodRef, tty bool) (scheduler.Prepared, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &fakePrepared{tty: tty}
	f.opened[pod.Name] = s
	return s, nil
}

// reservedPodFor is a Ready pod reserved for owner's run.
func reservedPodFor(name string, prof *profile.Profile, owner, run string) *corev1.Pod {
	pod := idleReadyPod(name, prof)
	pod.Labels[LabelState] = StateReserved
	pod.Labels[LabelOwner] = owner
	pod.Labels[LabelRun] = run
	pod.Annotations = map[string]string{AnnCold: "false"}
	return pod
}

// addReserved creates a pod reserved for p's own run in cs and tells p about
// it, and returns it; the pool may hand it out from then on.
func addReserved(t *testing.T, p *Pool, cs *fake.Clientset, name string, prof *profile.Profile) *corev1.Pod {
	t.Helper()
	pod := reservedPodFor(name, prof, p.opts.ReplicaID, p.run)
	if _, err := cs.CoreV1().Pods(testNS).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p.onPod(pod, true)
	return pod
}

// renewed marks p's liveness Lease as renewed now, as Run's first renewal
// would, so that it may hand out reserved pods.
func renewed(p *Pool) {
	p.live.mu.Lock()
	p.live.validUntil = p.clock.Now().Add(p.opts.LivenessLeaseDuration - p.opts.ValidityMargin)
	p.live.mu.Unlock()
}

// TestReservedHandOutWaitsForNoAPICall: a warm login on a reserved pod
// returns while its claim record is still in flight (the record's PATCH is
// held until the login has its pod), and the record then makes the pod
// claimed for the user with test operations on uid, state, owner and run.
func TestReservedHandOutWaitsForNoAPICall(t *testing.T) {
	prof := unitProfile(t)
	cs := fake.NewClientset()
	hold := make(chan struct{})
	var patches atomic.Int32
	cs.PrependReactor("patch", "pods", func(act k8stesting.Action) (bool, runtime.Object, error) {
		patches.Add(1)
		<-hold
		return false, nil, nil
	})
	p := newUnitPool(t, cs, prof)
	renewed(p)
	addReserved(t, p, cs, "r", prof)
	before := len(cs.Actions())
	pod, err := p.Claim(context.Background(), "", scheduler.Claim{Identity: scheduler.Identity{User: "alice"}, Session: "c1"})
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if pod.Ref.Name != "r" || !pod.Warm || pod.Record == nil {
		t.Fatalf("Claim gave %+v, want reserved pod r with its record in flight", pod)
	}
	select {
	case <-pod.Record.Done():
		t.Fatal("the claim record was done before its write was let through")
	default:
	}
	close(hold)
	if err := pod.Record.Wait(context.Background()); err != nil {
		t.Fatalf("claim record: %v", err)
	}
	if n := patches.Load(); n != 1 {
		t.Errorf("%d patches, want the one claim record", n)
	}
	for _, a := range cs.Actions()[before:] {
		if a.GetVerb() != "patch" {
			t.Errorf("unexpected %s %s on a warm login", a.GetVerb(), a.GetResource().Resource)
		}
	}
	got, err := cs.CoreV1().Pods(testNS).Get(context.Background(), "r", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[LabelState] != StateClaimed || got.Labels[LabelSession] != "c1" || got.Annotations[AnnUser] != "alice" ||
		got.Labels[LabelOwner] != "r1" || got.Labels[LabelRun] != p.run {
		t.Errorf("pod after the record: labels %v annotations %v", got.Labels, got.Annotations)
	}
	if got := metricValue(p.metrics.reservedHandouts.WithLabelValues(prof.Name)); got != 1 {
		t.Errorf("reserved hand-outs = %v, want 1", got)
	}
}

// TestClaimRecordFailsOnPodNoLongerOurs: when the pod handed out is no
// longer this run's reserved pod by the time the record is written (here,
// another run of the replica took it over, as if this one had been reaped
// and the pod reused), the record fails plainly, the failure is counted,
// and the pod is deleted.
func TestClaimRecordFailsOnPodNoLongerOurs(t *testing.T) {
	prof := unitProfile(t)
	cs := fake.NewClientset()
	// Just before the record reaches the API server, the server's copy
	// moves on; the pool's memory does not know yet.
	cs.PrependReactor("patch", "pods", func(act k8stesting.Action) (bool, runtime.Object, error) {
		changed := reservedPodFor("r", prof, "r1", "another-run")
		if err := cs.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), changed, testNS); err != nil {
			t.Error(err)
		}
		return false, nil, nil
	})
	p := newUnitPool(t, cs, prof)
	renewed(p)
	addReserved(t, p, cs, "r", prof)
	pod, err := p.Claim(context.Background(), "", scheduler.Claim{Identity: scheduler.Identity{User: "alice"}, Session: "c1"})
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	err = pod.Record.Wait(context.Background())
	var ref *scheduler.Refusal
	if !errors.Is(err, scheduler.ErrPodGone) || !errors.As(err, &ref) || ref.Reason == "" {
		t.Fatalf("claim record error %v, want a refusal wrapping ErrPodGone", err)
	}
	p.bg.Wait()
	if _, err := cs.CoreV1().Pods(testNS).Get(context.Background(), "r", metav1.GetOptions{}); err == nil {
		t.Error("the pod whose claim record failed was not deleted")
	}
	if got := metricValue(p.metrics.recordFailures.WithLabelValues(prof.Name, "changed")); got != 1 {
		t.Errorf("record failures (changed) = %v, want 1", got)
	}
}

// TestNoReservedHandOutPastValidity: a replica whose Lease renewal is not
// known to have succeeded recently hands out no reserved pod; the login
// falls back to the unreserved pods (none here: a miss).
func TestNoReservedHandOutPastValidity(t *testing.T) {
	prof := unitProfile(t)
	cs := fake.NewClientset()
	p := newUnitPool(t, cs, prof)
	renewed(p)
	addReserved(t, p, cs, "r", prof)
	p.clock.(interface{ Step(time.Duration) }).Step(p.opts.LivenessLeaseDuration - p.opts.ValidityMargin)
	if _, err := p.Claim(context.Background(), "", scheduler.Claim{Session: "c1"}); !errors.Is(err, scheduler.ErrNoIdlePod) {
		t.Fatalf("Claim past the validity: %v, want ErrNoIdlePod", err)
	}
	if p.reserved.handable(prof.Name) != 1 {
		t.Error("the reserved pod left the set although it was not handed out")
	}
}

// TestOnlyOwnReservedPodsArePrepared: streams are opened only into this
// run's reserved pods, one per pod, a terminal by default; pods of other
// replicas, of another run of this replica, and unreserved pods get none.
func TestOnlyOwnReservedPodsArePrepared(t *testing.T) {
	prof := unitProfile(t)
	cs := fake.NewClientset()
	prep := &fakePreparer{opened: map[string]*fakePrepared{}}
	p := newUnitPoolWith(t, cs, prof, prep)
	mine := addReserved(t, p, cs, "mine", prof)
	for _, pod := range []*corev1.Pod{
		idleReadyPod("idle", prof),
		reservedPodFor("theirs", prof, "r2", "x"),
	} {
		p.onPod(pod, true)
	}
	for _, name := range []string{"mine", "idle", "theirs"} {
		p.prepareOne(context.Background(), name)
	}
	if len(prep.opened) != 1 || prep.opened["mine"] == nil || !prep.opened["mine"].tty {
		t.Fatalf("streams opened into %v, want one terminal stream into %s", prep.opened, mine.Name)
	}
	if terminal, plain := p.reserved.preparedKinds(); terminal != 1 || plain != 0 {
		t.Errorf("prepared streams: %d terminal, %d plain; want 1 terminal", terminal, plain)
	}
	// Claimed elsewhere (impossible for a reserved pod, but the set must
	// still let go): its stream is closed at once.
	gone := mine.DeepCopy()
	gone.Labels[LabelState] = StateClaimed
	gone.Labels[LabelOwner] = "r2"
	p.onPod(gone, true)
	if !prep.opened["mine"].closed.Load() || p.reserved.count(prof.Name) != 0 {
		t.Error("a pod that is no longer this run's kept its stream or its place in the set")
	}
}

// TestEarlierRunPodsDeleted: reserved and claimed pods of this replica id
// that name another run (an earlier process) are deleted, never adopted.
func TestEarlierRunPodsDeleted(t *testing.T) {
	prof := unitProfile(t)
	old := reservedPodFor("old-reserved", prof, "r1", "earlier")
	claimed := reservedPodFor("old-claimed", prof, "r1", "earlier")
	claimed.Labels[LabelState] = StateClaimed
	other := reservedPodFor("other", prof, "r2", "earlier")
	cs := fake.NewClientset(old, claimed, other)
	p := newUnitPool(t, cs, prof)
	for _, pod := range []*corev1.Pod{old, claimed, other} {
		p.onPod(pod, true)
	}
	p.bg.Wait()
	left := describe(podsOf(t, cs), func(pod corev1.Pod) string { return pod.Name })
	if len(left) != 1 || left[0] != "other" {
		t.Errorf("pods left %v, want only another replica's", left)
	}
	if p.reserved.count(prof.Name) != 0 {
		t.Error("an earlier run's pod entered the reserved set")
	}
}

// TestSurplusGivenBackAfterHysteresis: pods held beyond the published
// share are given back (reserved → idle, tested on uid, state, owner and
// run) once the surplus has lasted a renewal period, prepared ones last.
func TestSurplusGivenBackAfterHysteresis(t *testing.T) {
	prof := unitProfile(t)
	cs := fake.NewClientset()
	p := newUnitPool(t, cs, prof)
	a := addReserved(t, p, cs, "a", prof)
	b := addReserved(t, p, cs, "b", prof)
	stream := &fakePrepared{tty: true}
	if !p.reserved.prepared(b.Name, b.UID, stream) {
		t.Fatal("giving b its stream failed")
	}
	now := p.clock.Now()
	if got := p.reserved.surplus(prof.Name, 1, time.Second, now); got != nil {
		t.Fatalf("gave back %d pods at once; want none before the hysteresis", len(got))
	}
	got := p.reserved.surplus(prof.Name, 1, time.Second, now.Add(time.Second))
	if len(got) != 1 || got[0].name != a.Name {
		t.Fatalf("surplus after the hysteresis = %v, want the unprepared pod a", got)
	}
	p.giveBack(got)
	p.bg.Wait()
	pod, err := cs.CoreV1().Pods(testNS).Get(context.Background(), a.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Labels[LabelState] != StateIdle || pod.Labels[LabelOwner] != "" || pod.Labels[LabelRun] != "" {
		t.Errorf("given-back pod labels %v", pod.Labels)
	}
	if stream.closed.Load() || p.reserved.count(prof.Name) != 1 {
		t.Error("the prepared pod within the share was given back or lost its stream")
	}
}

// TestStoppingReplicaGivesReservedPodsBack: a replica that stops cleanly
// makes its reserved pods idle again and closes their streams, but never
// touches a pod it already handed out, which stays the user's.
func TestStoppingReplicaGivesReservedPodsBack(t *testing.T) {
	prof := unitProfile(t)
	cs := fake.NewClientset()
	p := newUnitPool(t, cs, prof)
	a := addReserved(t, p, cs, "a", prof)
	b := addReserved(t, p, cs, "b", prof)
	stream := &fakePrepared{tty: true}
	if !p.reserved.prepared(a.Name, a.UID, stream) {
		t.Fatal("giving a its stream failed")
	}
	handed := p.reserved.handOut(prof.Name)
	if handed == nil {
		t.Fatal("no pod handed out")
	}
	p.returnReserved(p.reserved.takeAll())
	for _, name := range []string{a.Name, b.Name} {
		pod, err := cs.CoreV1().Pods(testNS).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := StateIdle
		if name == handed.name {
			want = StateReserved
		}
		if got := pod.Labels[LabelState]; got != want {
			t.Errorf("pod %s after the stop: state %q, want %q (handed out: %s)", name, got, want, handed.name)
		}
	}
	if handed.name != a.Name && !stream.closed.Load() {
		t.Error("the stream of a pod given back was left open")
	}
}
