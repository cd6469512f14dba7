package pool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podgate/podgate/scheduler"
)

// recordedEvents keeps the Events the pool records, as
// "namespace/pod/uid Reason: note" lines.
type recordedEvents struct {
	mu  sync.Mutex // protects got
	got []string
}

func (r *recordedEvents) PodEvent(pod scheduler.PodRef, uid string, reason scheduler.EventReason, note string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, fmt.Sprintf("%s/%s/%s %s: %s", pod.Namespace, pod.Name, uid, reason, note))
}

func (r *recordedEvents) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func withEvents(p *Pool) *recordedEvents {
	r := &recordedEvents{}
	p.events = r
	return r
}

func waitingPod(name, reason, message string, p *corev1.Pod) *corev1.Pod {
	p = p.DeepCopy()
	p.Name, p.UID = name, types.UID("uid-"+name)
	p.Status = corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
		Name: "guest", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}},
	}}}
	return p
}

// TestReapedEventOnlyOnceDeleted: the leader records Reaped, with its
// reason, on a pod it deleted, and nothing on an idle pod whose delete
// lost to a claim (the pod is in use, not reaped).
func TestReapedEventOnlyOnceDeleted(t *testing.T) {
	prof := unitProfile(t)
	idle := idleReadyPod("idle", prof)
	released := idleReadyPod("released", prof)
	released.Labels[LabelState] = StateReleased
	cs := fake.NewClientset(idle, released)
	cs.PrependReactor("delete", "pods", func(act k8stesting.Action) (bool, runtime.Object, error) {
		if act.(k8stesting.DeleteAction).GetName() == "idle" {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "idle", errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	p := newUnitPool(t, cs, prof)
	ev := withEvents(p)
	p.reap(context.Background(), replicas{}, p.clock.Now())
	p.deleteAsLeader(context.Background(), idle, reaped("pool above target"))
	p.bg.Wait()
	want := []string{testNS + "/released/uid-released Reaped: its holder released it, but could not delete it"}
	if got := ev.lines(); !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// TestDoomedBecause: why a spare pod is replaced, as the Event says it: a
// pod that cannot start is a Warning naming the degraded profile and what
// Kubernetes said; the others are Reaped with their reason.
func TestDoomedBecause(t *testing.T) {
	prof := unitProfile(t)
	p := newUnitPool(t, fake.NewClientset(), prof)
	p.opts.MaxIdleAge = 24 * time.Hour
	now := p.clock.Now()
	fresh := idleReadyPod("fresh", prof)
	fresh.CreationTimestamp = metav1.NewTime(now.Add(-time.Minute))
	old := fresh.DeepCopy()
	old.Name = "old"
	old.CreationTimestamp = metav1.NewTime(now.Add(-25 * time.Hour))
	stale := fresh.DeepCopy()
	stale.Name = "stale"
	stale.Labels[LabelHash] = "older"
	unpullable := waitingPod("unpullable", "ImagePullBackOff", `Back-off pulling image "localhost/missing:never"`, fresh)
	crashing := waitingPod("crashing", "CrashLoopBackOff", "back-off 10s restarting failed container", fresh)
	slow := waitingPod("slow", "ContainerCreating", "", fresh)
	slow.CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
	for _, tc := range []struct {
		pod    *corev1.Pod
		reason scheduler.EventReason
		note   []string
	}{
		{fresh, "", nil},
		{old, scheduler.EventReaped, []string{"idle for longer than 24h0m0s"}},
		{stale, scheduler.EventReaped, []string{fmt.Sprintf("profile %q has a new template", prof.Name)}},
		{unpullable, scheduler.EventProfileDegraded, []string{fmt.Sprintf("profile %q is degraded", prof.Name), "ImagePull", "cannot be pulled", "localhost/missing:never"}},
		{crashing, scheduler.EventProfileDegraded, []string{"Crash", "exits at start", "restarting failed container"}},
		{slow, scheduler.EventProfileDegraded, []string{"ReadinessTimeout", "does not become ready"}},
	} {
		got := p.doomedBecause(prof, tc.pod, podReady(tc.pod), now)
		if got.reason != tc.reason {
			t.Errorf("%s: reason %q, want %q (note %q)", tc.pod.Name, got.reason, tc.reason, got.note)
		}
		for _, w := range tc.note {
			if !strings.Contains(got.note, w) {
				t.Errorf("%s: note %q lacks %q", tc.pod.Name, got.note, w)
			}
		}
	}
}

// TestWaiterPodEvents: a pod created for a waiting login and not handed to
// it is deleted by the waiter's replica, which says why: the profile is
// degraded when the pod showed it cannot start, else the login stopped
// waiting.
func TestWaiterPodEvents(t *testing.T) {
	prof := unitProfile(t)
	for _, tc := range []struct {
		name string
		pod  func(*corev1.Pod) *corev1.Pod
		want string
	}{
		{"failed", func(p *corev1.Pod) *corev1.Pod { return waitingPod("own", "ErrImagePull", "pull access denied", p) },
			fmt.Sprintf("ProfileDegraded: profile %q is degraded: ImagePull", prof.Name)},
		{"gave up", func(p *corev1.Pod) *corev1.Pod { return waitingPod("own", "ContainerCreating", "", p) },
			"Reaped: created for a login that stopped waiting for it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			own := tc.pod(idleReadyPod("own", prof))
			own.Labels[LabelState] = StateClaimed
			p := newUnitPool(t, fake.NewClientset(own), prof)
			ev := withEvents(p)
			w := p.queue.join(prof, claimFor("alice", "c1"))
			p.queue.created(w, own, p.clock.Now())
			p.endWait(w)
			p.bg.Wait()
			got := ev.lines()
			if len(got) != 1 || !strings.HasPrefix(got[0], testNS+"/own/uid-own "+tc.want) {
				t.Errorf("events %q, want one starting %q", got, tc.want)
			}
		})
	}
}

// TestClaimRecordFailedEvent: a reserved pod whose claim record fails is
// deleted with a Warning naming the user and connection it was handed to.
func TestClaimRecordFailedEvent(t *testing.T) {
	prof := unitProfile(t)
	pod := idleReadyPod("res", prof)
	pod.Labels[LabelState] = StateReserved
	cs := fake.NewClientset(pod)
	cs.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "res", errors.New("modified"))
	})
	p := newUnitPool(t, cs, prof)
	ev := withEvents(p)
	err := p.recordClaim(context.Background(), prof, &reservedPod{name: "res", profile: prof.Name, uid: pod.UID}, claimFor("alice", "c7"))
	if err == nil {
		t.Fatal("claim record succeeded against a conflict")
	}
	p.bg.Wait()
	want := testNS + `/res/uid-res ClaimRecordFailed: the claim for user "alice", connection c7, could not be recorded (changed: `
	if got := ev.lines(); len(got) != 1 || !strings.HasPrefix(got[0], want) {
		t.Errorf("events %q, want one starting %q", got, want)
	}
}
