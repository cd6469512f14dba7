package pool

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/podgate/podgate/pool/profile"
)

// livenessLease is a replica's liveness Lease renewed at renewed, naming
// run.
func livenessLease(replica, run string, renewed time.Time) *coordv1.Lease {
	want, _ := json.Marshal(map[string]int{"default": 1})
	return &coordv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name: livenessLeaseName(replica), Namespace: testNS,
			Labels:      map[string]string{LabelReplica: "true"},
			Annotations: map[string]string{LeaseAnnRun: run, LeaseAnnWant: string(want)},
		},
		Spec: coordv1.LeaseSpec{
			HolderIdentity:       ptr.To(replica),
			LeaseDurationSeconds: ptr.To(int32(15)),
			RenewTime:            &metav1.MicroTime{Time: renewed},
		},
	}
}

// leadingPool is a unit pool over cs that leads term 1, has published sp
// as the default profile's split, and whose profile has proven it can
// start pods. Its own run is "run1"; cs must hold its Lease.
func leadingPool(t *testing.T, cs *fake.Clientset, prof *profile.Profile, sp split) *Pool {
	t.Helper()
	p := newUnitPool(t, cs, prof)
	p.run = "run1"
	p.lead.set(context.Background(), 1)
	p.live.mu.Lock()
	p.live.published = &sharesRecord{Term: 1, Profiles: map[string]split{prof.Name: sp}}
	p.live.mu.Unlock()
	p.demand.mu.Lock()
	p.demand.healthLocked(prof).ready()
	p.demand.mu.Unlock()
	return p
}

// unitLeases are live Leases of r1 (run1) and r2 (run2), renewed at t0.
func unitLeases(t0 time.Time) []runtime.Object {
	return []runtime.Object{livenessLease("r1", "run1", t0), livenessLease("r2", "run2", t0)}
}

// TestLeaderCreatesReservedPodsForDeficits: with nothing in the pool, the
// leader creates the target's pods reserved for the replicas short of
// their published shares, each for its owner's run, and the rest idle.
func TestLeaderCreatesReservedPodsForDeficits(t *testing.T) {
	prof := unitProfile(t)
	prof.PoolMin = 4
	t0 := time.Unix(1e9, 0)
	cs := namingClientset(unitLeases(t0)...)
	p := leadingPool(t, cs, prof, split{Unreserved: 1, Shares: map[string]int{"r1": 2, "r2": 1}})
	p.sync(p.clock.Now())
	p.bg.Wait()
	got := describe(podsOf(t, cs), func(pod corev1.Pod) string {
		return pod.Labels[LabelState] + ":" + pod.Labels[LabelOwner] + ":" + pod.Labels[LabelRun]
	})
	slices.Sort(got)
	want := []string{"idle::", "reserved:r1:run1", "reserved:r1:run1", "reserved:r2:run2"}
	if !slices.Equal(got, want) {
		t.Errorf("pods created %v, want %v", got, want)
	}
}

// TestLeaderRelabelsIdlePodsForShortReplica: idle pods beyond the
// published remainder are reserved for the replica short of its share,
// each by a JSON patch that tests the pod is still idle.
func TestLeaderRelabelsIdlePodsForShortReplica(t *testing.T) {
	prof := unitProfile(t)
	prof.PoolMin = 3
	t0 := time.Unix(1e9, 0)
	objs := unitLeases(t0)
	for _, n := range []string{"i1", "i2", "i3"} {
		pod := idleReadyPod(n, prof)
		pod.CreationTimestamp = metav1.NewTime(t0)
		objs = append(objs, pod)
	}
	cs := namingClientset(objs...)
	var patches []string
	cs.PrependReactor("patch", "pods", func(act k8stesting.Action) (bool, runtime.Object, error) {
		pa := act.(k8stesting.PatchAction)
		if pa.GetPatchType() != "application/json-patch+json" {
			t.Errorf("relabel of %s is a %s patch, want a JSON patch", pa.GetName(), pa.GetPatchType())
		}
		patches = append(patches, string(pa.GetPatch()))
		return false, nil, nil
	})
	p := leadingPool(t, cs, prof, split{Unreserved: 1, Shares: map[string]int{"r2": 2}})
	p.sync(p.clock.Now())
	p.bg.Wait()
	reserved := 0
	for _, pod := range podsOf(t, cs) {
		if pod.Labels[LabelState] == StateReserved {
			reserved++
			if pod.Labels[LabelOwner] != "r2" || pod.Labels[LabelRun] != "run2" {
				t.Errorf("pod %s reserved for %s/%s, want r2/run2", pod.Name, pod.Labels[LabelOwner], pod.Labels[LabelRun])
			}
		}
	}
	if reserved != 2 || len(patches) != 2 {
		t.Fatalf("%d pods reserved by %d patches, want 2 and 2", reserved, len(patches))
	}
	for _, body := range patches {
		if !containsAll(body, `"op":"test"`, `"value":"idle"`, `"path":"/metadata/uid"`) {
			t.Errorf("relabel patch %s does not test uid and state=idle", body)
		}
	}
}

// TestLeaderReapsLapsedReplicaPods: a replica whose Lease lapsed (confirmed
// by a live read) loses its reserved and claimed pods; a live replica's
// reserved pods are not touched.
func TestLeaderReapsLapsedReplicaPods(t *testing.T) {
	prof := unitProfile(t)
	t0 := time.Unix(1e9, 0)
	dead := reservedPodFor("dead-reserved", prof, "r3", "run3")
	claimed := reservedPodFor("dead-claimed", prof, "r3", "run3")
	claimed.Labels[LabelState] = StateClaimed
	claimed.Annotations[AnnClaimedAt] = t0.Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	live := reservedPodFor("live-reserved", prof, "r2", "run2")
	objs := append(unitLeases(t0), livenessLease("r3", "run3", t0.Add(-time.Minute)), dead, claimed, live)
	cs := namingClientset(objs...)
	p := leadingPool(t, cs, prof, split{Unreserved: 0, Shares: map[string]int{"r1": 1, "r2": 1}})
	p.sync(p.clock.Now())
	p.bg.Wait()
	left := describe(podsOf(t, cs), func(pod corev1.Pod) string { return pod.Name })
	if slices.Contains(left, "dead-reserved") || slices.Contains(left, "dead-claimed") || !slices.Contains(left, "live-reserved") {
		t.Errorf("pods left %v: want the lapsed replica's gone and the live one's kept", left)
	}
}

// TestLeaderCountsLapsedReservedPodsUntilGone: the reserved pods of a
// replica whose Lease the cache shows lapsed, but which a live read finds
// renewed (a renewal the cache has not shown yet), are neither deleted nor
// handed to anyone, and they still count towards the target: the leader
// creates no replacements next to them (with two replicas on an overloaded
// API server, that doubled the pool).
func TestLeaderCountsLapsedReservedPodsUntilGone(t *testing.T) {
	prof := unitProfile(t)
	prof.PoolMin = 2
	t0 := time.Unix(1e9, 0)
	objs := append(unitLeases(t0), livenessLease("r3", "run3", t0.Add(-time.Minute)),
		reservedPodFor("late-1", prof, "r3", "run3"), reservedPodFor("late-2", prof, "r3", "run3"))
	cs := namingClientset(objs...)
	cs.PrependReactor("get", "leases", func(act k8stesting.Action) (bool, runtime.Object, error) {
		if act.(k8stesting.GetAction).GetName() != livenessLeaseName("r3") {
			return false, nil, nil
		}
		return true, livenessLease("r3", "run3", t0), nil
	})
	p := leadingPool(t, cs, prof, split{Unreserved: 0, Shares: map[string]int{"r1": 1, "r2": 1}})
	p.sync(p.clock.Now())
	p.bg.Wait()
	got := describe(podsOf(t, cs), func(pod corev1.Pod) string { return pod.Name })
	slices.Sort(got)
	if want := []string{"late-1", "late-2"}; !slices.Equal(got, want) {
		t.Errorf("pods after a pass %v, want only %v", got, want)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
