package pool

import (
	"context"
	"errors"
	"testing"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

// TestConfirmExpired: a Lease the cache shows expired is reaped only when
// the API server agrees, so a stale cache after an outage costs no one
// their pod.
func TestConfirmExpired(t *testing.T) {
	now := time.Now()
	lease := func(replica string, renewed time.Time) *coordv1.Lease {
		return &coordv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: livenessLeaseName(replica), Namespace: "ns"},
			Spec:       coordv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: renewed}, LeaseDurationSeconds: ptr.To[int32](5)},
		}
	}
	cs := fake.NewClientset(lease("fresh", now.Add(-time.Second)), lease("lapsed", now.Add(-time.Minute)))
	p := &Pool{client: cs, opts: Options{Namespace: "ns", LivenessRenew: time.Second}}
	for replica, want := range map[string]bool{"fresh": false, "lapsed": true, "missing": true} {
		if got := p.confirmExpired(context.Background(), replica, now); got != want {
			t.Errorf("confirmExpired(%s) = %v, want %v", replica, got, want)
		}
	}
	cs.PrependReactor("get", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	if p.confirmExpired(context.Background(), "lapsed", now) {
		t.Error("an unreadable Lease counted as expired")
	}
}
