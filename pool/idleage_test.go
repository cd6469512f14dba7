package pool

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podgate/podgate/pool/profile"
)

// TestMaxIdleAgeZeroKeepsPods: PODGATE_POOL_MAX_IDLE_AGE=0s keeps idle
// pods forever, as documented; before, a zero became 24 hours. A set age
// still replaces older pods.
func TestMaxIdleAgeZeroKeepsPods(t *testing.T) {
	prof := unitProfile(t)
	now := time.Unix(1e9, 0)
	old := idleReadyPod("old", prof)
	old.CreationTimestamp = metav1.NewTime(now.Add(-30 * 24 * time.Hour))
	for _, c := range []struct {
		age    time.Duration
		doomed int
	}{{0, 0}, {time.Hour, 1}} {
		cs := fake.NewClientset(old.DeepCopy())
		f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(testNS))
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		store, err := profile.NewStore(prof, f.Core().V1().PodTemplates().Informer(), log)
		if err != nil {
			t.Fatal(err)
		}
		p, err := New(cs, f.Core().V1().Pods().Informer(), f.Coordination().V1().Leases().Informer(), store, nil,
			clocktesting.NewFakeClock(now), log, prometheus.NewRegistry(), Options{Namespace: testNS, ReplicaID: "r1", MaxIdleAge: c.age})
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		f.Start(stop)
		if !cache.WaitForCacheSync(stop, f.Core().V1().Pods().Informer().HasSynced, p.podsHandled) {
			t.Fatal("cache did not sync")
		}
		v := p.view(prof, replicas{}, inFlight{}, now)
		close(stop)
		f.Shutdown()
		if len(v.doomed) != c.doomed || v.unreserved.Len()+len(v.doomed) != 1 {
			t.Errorf("MaxIdleAge %v: a 30-day-old idle pod: %d doomed, %d unreserved; want %d doomed", c.age, len(v.doomed), v.unreserved.Len(), c.doomed)
		}
	}
}
