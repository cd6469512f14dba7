package pool

import (
	"context"
	"errors"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestLeaderDeletesIdlePodOnlyUnchanged: the leader deletes an idle pod
// only if it is unchanged since its cache saw it, so a claim that won the
// pod in between (another replica's PATCH) keeps it; a refused delete is
// forgotten, so the next pass decides again. A released pod is deleted by
// UID alone.
func TestLeaderDeletesIdlePodOnlyUnchanged(t *testing.T) {
	prof := unitProfile(t)
	idle := idleReadyPod("idle", prof)
	released := idleReadyPod("released", prof)
	released.Labels[LabelState] = StateReleased
	cs := fake.NewClientset(idle, released)
	preconds := map[string]string{}
	cs.PrependReactor("delete", "pods", func(act k8stesting.Action) (bool, runtime.Object, error) {
		da := act.(k8stesting.DeleteAction)
		pre := da.GetDeleteOptions().Preconditions
		switch {
		case pre == nil || pre.UID == nil:
			t.Errorf("delete of %s without a UID precondition", da.GetName())
		case pre.ResourceVersion != nil:
			preconds[da.GetName()] = *pre.ResourceVersion
		default:
			preconds[da.GetName()] = ""
		}
		if da.GetName() == "idle" {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "idle", errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	p := newUnitPool(t, cs, prof)
	p.deleteAsLeader(context.Background(), idle, reaped("pool above target"))
	p.deleteAsLeader(context.Background(), released, reaped("released"))
	p.bg.Wait()
	if got := preconds["idle"]; got != idle.ResourceVersion {
		t.Errorf("idle pod deleted with resourceVersion precondition %q, want %q", got, idle.ResourceVersion)
	}
	if got, ok := preconds["released"]; !ok || got != "" {
		t.Errorf("released pod: precondition %q (deleted %v), want UID only", got, ok)
	}
	if p.deleting.has("idle") {
		t.Error("a refused delete is still remembered, so no later pass would retry it")
	}
}
