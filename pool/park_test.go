package pool

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/scheduler"
)

// unitNow is the fake clock's time in newUnitPoolAs.
var unitNow = time.Unix(1e9, 0)

// parkedPod is a Ready pod parked for key until until.
func parkedPod(name string, prof *profile.Profile, key string, until time.Time) *corev1.Pod {
	pod := idleReadyPod(name, prof)
	pod.Labels[LabelState] = StateParked
	pod.Labels[LabelUserKey] = key
	pod.Annotations = map[string]string{AnnCold: "false", AnnParkedUntil: until.UTC().Format(time.RFC3339Nano)}
	return pod
}

// enforceResourceVersion makes the fake API server do what the real one
// does with a merge patch that names a resourceVersion: refuse it with 409
// unless the pod is still at that version, and move the version on with
// every patch it lets through.
func enforceResourceVersion(cs *fake.Clientset) {
	var mu sync.Mutex
	version := map[string]int{}
	cs.PrependReactor("patch", "pods", func(act k8stesting.Action) (bool, runtime.Object, error) {
		pa := act.(k8stesting.PatchAction)
		var body struct {
			Metadata struct {
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
		}
		_ = json.Unmarshal(pa.GetPatch(), &body)
		mu.Lock()
		defer mu.Unlock()
		cur := version[pa.GetName()] + 1 // every test pod starts at "1"
		if rv := body.Metadata.ResourceVersion; rv != "" && rv != fmtInt(cur) {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, pa.GetName(), errors.New("the object has been modified"))
		}
		version[pa.GetName()]++
		return false, nil, nil
	})
}

func fmtInt(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestJudgeParked: the expiry verdict is a pure function of the pod and the
// time, shared by reconnects and the leader.
func TestJudgeParked(t *testing.T) {
	prof := unitProfile(t)
	until := unitNow.Add(time.Hour)
	notReady := parkedPod("p", prof, "k", until)
	notReady.Status.Conditions[0].Status = corev1.ConditionFalse
	deleting := parkedPod("p", prof, "k", until)
	deleting.DeletionTimestamp = &metav1.Time{Time: unitNow}
	noUntil := parkedPod("p", prof, "k", until)
	delete(noUntil.Annotations, AnnParkedUntil)
	garbled := parkedPod("p", prof, "k", until)
	garbled.Annotations[AnnParkedUntil] = "tomorrow"
	expiredNotReady := parkedPod("p", prof, "k", unitNow)
	expiredNotReady.Status.Conditions[0].Status = corev1.ConditionFalse
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		now  time.Time
		want parkVerdict
	}{
		{"within the window", parkedPod("p", prof, "k", until), unitNow, parkKeep},
		{"a nanosecond before the end", parkedPod("p", prof, "k", until), until.Add(-time.Nanosecond), parkKeep},
		{"at the end", parkedPod("p", prof, "k", until), until, parkExpired},
		{"after the end", parkedPod("p", prof, "k", until), until.Add(time.Hour), parkExpired},
		{"no end", noUntil, unitNow, parkExpired},
		{"unreadable end", garbled, unitNow, parkExpired},
		{"not Ready", notReady, unitNow, parkGone},
		{"being deleted", deleting, unitNow, parkGone},
		{"expired and not Ready: expired", expiredNotReady, unitNow.Add(time.Second), parkExpired},
	} {
		if got := judgeParked(tc.pod, tc.now); got != tc.want {
			t.Errorf("%s: verdict %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestUnparkTwoClaimers: two replicas take back the same parked pod at
// once; the resourceVersion precondition lets exactly one win, and the
// loser gets no pod. A third login under another key never sees it.
func TestUnparkTwoClaimers(t *testing.T) {
	prof := unitProfile(t)
	key := scheduler.UserKey("alice", prof.Name)
	cs := fake.NewClientset(parkedPod("parked", prof, key, unitNow.Add(time.Hour)))
	enforceResourceVersion(cs)
	a, b := newUnitPoolAs(t, cs, prof, nil, "ra", nil), newUnitPoolAs(t, cs, prof, nil, "rb", nil)
	claim := func(user string) scheduler.Claim {
		return scheduler.Claim{Identity: scheduler.Identity{User: user}, UserKey: scheduler.UserKey(user, prof.Name), Session: "c-" + user}
	}
	if pod, res, err := a.Unpark(context.Background(), prof.Name, claim("bob")); pod != nil || res != scheduler.ReconnectNone || err != nil {
		t.Fatalf("bob's Unpark: %v, %q, %v; want nothing", pod, res, err)
	}
	type out struct {
		pod *scheduler.Pod
		res scheduler.ReconnectResult
		err error
	}
	results := make(chan out, 2)
	start := make(chan struct{})
	for _, p := range []*Pool{a, b} {
		go func() {
			<-start
			pod, res, err := p.Unpark(context.Background(), prof.Name, claim("alice"))
			results <- out{pod, res, err}
		}()
	}
	close(start)
	won := 0
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Errorf("Unpark: %v", r.err)
		}
		if r.pod != nil {
			won++
			if r.pod.Ref.Name != "parked" || r.res != scheduler.ReconnectSamePod {
				t.Errorf("winner got %s (%q)", r.pod.Ref.Name, r.res)
			}
		}
	}
	if won != 1 {
		t.Fatalf("%d logins took the parked pod, want exactly 1", won)
	}
	got, err := cs.CoreV1().Pods(testNS).Get(context.Background(), "parked", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[LabelState] != StateClaimed || got.Labels[LabelUserKey] != key || got.Annotations[AnnParkedUntil] != "" ||
		(got.Labels[LabelOwner] != "ra" && got.Labels[LabelOwner] != "rb") || got.Annotations[AnnUser] != "alice" {
		t.Errorf("taken-back pod: labels %v, annotations %v", got.Labels, got.Annotations)
	}
}

// TestUnparkVerdicts: an expired or not-Ready parked pod is not taken back
// and the reconnect is told why; a pod of another profile under another
// key is not seen.
func TestUnparkVerdicts(t *testing.T) {
	prof := unitProfile(t)
	key := scheduler.UserKey("alice", prof.Name)
	expired := parkedPod("expired", prof, key, unitNow.Add(-time.Second))
	cs := fake.NewClientset(expired)
	p := newUnitPool(t, cs, prof)
	c := scheduler.Claim{Identity: scheduler.Identity{User: "alice"}, UserKey: key, Session: "c1"}
	if pod, res, err := p.Unpark(context.Background(), prof.Name, c); pod != nil || res != scheduler.ReconnectExpired || err != nil {
		t.Errorf("expired: %v, %q, %v", pod, res, err)
	}
	notReady := parkedPod("stopped", prof, key, unitNow.Add(time.Hour))
	notReady.Status.Conditions[0].Status = corev1.ConditionFalse
	cs2 := fake.NewClientset(notReady)
	p2 := newUnitPool(t, cs2, prof)
	if pod, res, err := p2.Unpark(context.Background(), prof.Name, c); pod != nil || res != scheduler.ReconnectDeleted || err != nil {
		t.Errorf("not Ready: %v, %q, %v", pod, res, err)
	}
	for _, act := range append(cs.Actions(), cs2.Actions()...) {
		if act.GetVerb() == "patch" {
			t.Errorf("unusable parked pod patched: %v", act)
		}
	}
}

// TestParkAndCount: Park turns this run's claimed pod into a parked one
// with no owner (so no reap of owners takes it), and UserPods counts the
// user's pods this run does not hold; over the limit, Park refuses.
func TestParkAndCount(t *testing.T) {
	prof := unitProfile(t)
	key := scheduler.UserKey("alice", prof.Name)
	c := scheduler.Claim{Identity: scheduler.Identity{User: "alice"}, UserKey: key, Session: "c1"}
	claimed := func(name, owner, run string, c scheduler.Claim) *corev1.Pod {
		pod := idleReadyPod(name, prof)
		pod.Labels[LabelState], pod.Labels[LabelOwner], pod.Labels[LabelRun] = StateClaimed, owner, run
		pod.Labels[LabelUserKey] = c.UserKey
		pod.Annotations = map[string]string{AnnCold: "false", AnnUser: c.Identity.User}
		return pod
	}
	bob := scheduler.Claim{Identity: scheduler.Identity{User: "bob"}, UserKey: scheduler.UserKey("bob", prof.Name)}
	cs := fake.NewClientset(
		claimed("mine", "r1", "run1", c), claimed("mine2", "r1", "run1", c),
		claimed("third", "r3", "run3", c), claimed("other", "r2", "run2", c),
		claimed("bobs", "r2", "run2", bob))
	// This process is run1, which claimed the pods above.
	p := newUnitPoolAs(t, cs, prof, nil, "r1", func(p *Pool) { p.run = "run1" })
	if n := p.UserPods(key); n != 2 {
		t.Errorf("UserPods = %d, want 2 (those of r2 and r3; this run's are the scheduler's own count)", n)
	}
	sp := &scheduler.Pod{Ref: scheduler.PodRef{Namespace: testNS, Name: "mine"}, UID: "uid-mine", Profile: prof.Name}
	until := unitNow.Add(72 * time.Hour)
	if err := p.Park(context.Background(), sp, c, until, 1); err != nil {
		t.Fatalf("Park: %v", err)
	}
	got, _ := cs.CoreV1().Pods(testNS).Get(context.Background(), "mine", metav1.GetOptions{})
	if got.Labels[LabelState] != StateParked || got.Labels[LabelOwner] != "" || got.Labels[LabelRun] != "" ||
		got.Labels[LabelUserKey] != key || got.Annotations[AnnParkedUntil] != until.UTC().Format(time.RFC3339Nano) {
		t.Errorf("parked pod: labels %v, annotations %v", got.Labels, got.Annotations)
	}
	// A pod that is not this run's claim is not parked.
	stale := &scheduler.Pod{Ref: scheduler.PodRef{Namespace: testNS, Name: "other"}, UID: "uid-other", Profile: prof.Name}
	if err := p.Park(context.Background(), stale, c, until, 0); err == nil {
		t.Error("parked a pod claimed by another replica")
	}

	// With a limit of 3, alice holds two elsewhere (other, third)
	// and mine2 here, plus one more here: parking mine2 is over.
	prof.Policy.MaxPerUser = 3
	sp2 := &scheduler.Pod{Ref: scheduler.PodRef{Namespace: testNS, Name: "mine2"}, UID: "uid-mine2", Profile: prof.Name}
	if err := p.Park(context.Background(), sp2, c, until, 1); !errors.Is(err, scheduler.ErrParkOverLimit) {
		t.Errorf("Park over the limit: %v", err)
	}
	if got := metricValue(p.metrics.reconnects.WithLabelValues(prof.Name, "over_limit")); got != 1 {
		t.Errorf("over_limit count %v", got)
	}
	if err := p.Park(context.Background(), sp2, c, until, 0); err != nil {
		t.Errorf("Park at the limit (nothing else here): %v", err)
	}
}

// TestReapParked: the leader deletes a parked pod once its window has
// passed (with a resourceVersion precondition, so a reconnect that took it
// first keeps it) and counts it expired; a pod within its window stays.
func TestReapParked(t *testing.T) {
	prof := unitProfile(t)
	keep := parkedPod("keep", prof, "k1", unitNow.Add(time.Hour))
	old := parkedPod("old", prof, "k2", unitNow.Add(-time.Millisecond))
	cs := fake.NewClientset(keep, old)
	var deletes []string
	cs.PrependReactor("delete", "pods", func(act k8stesting.Action) (bool, runtime.Object, error) {
		da := act.(k8stesting.DeleteActionImpl)
		if pre := da.GetDeleteOptions().Preconditions; pre == nil || pre.ResourceVersion == nil || *pre.ResourceVersion != "1" {
			t.Errorf("delete of %s without the resourceVersion precondition", da.GetName())
		}
		deletes = append(deletes, da.GetName())
		return false, nil, nil
	})
	p := newUnitPool(t, cs, prof)
	p.reapParked(context.Background(), unitNow)
	p.bg.Wait()
	if len(deletes) != 1 || deletes[0] != "old" {
		t.Errorf("deleted %v, want [old]", deletes)
	}
	if got := metricValue(p.metrics.reconnects.WithLabelValues(prof.Name, "expired")); got != 1 {
		t.Errorf("expired count %v", got)
	}
}
