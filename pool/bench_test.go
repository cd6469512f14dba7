package pool

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podgate/podgate/pool/profile"
)

// BenchmarkPickIdlePod measures picking an unreserved pod from the pool
// index, the in-process part of a claim of an unreserved pod: the
// idle-and-Ready index lookup, the filter against local claims, the
// shuffle, and marking and forgetting the first candidate. The API round trip (the claim PATCH) is
// left out; it is measured end to end by make bench.
func BenchmarkPickIdlePod(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("idle=%d", n), func(b *testing.B) {
			prof, err := profile.FromConfig(profile.DefaultProfileConfig{Image: "img", PoolMin: 2})
			if err != nil {
				b.Fatal(err)
			}
			objs := make([]runtime.Object, n)
			for i := range objs {
				objs[i] = idleReadyPod(fmt.Sprintf("p%04d", i), prof)
			}
			cs := fake.NewClientset(objs...)
			f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(testNS))
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			store, err := profile.NewStore(prof, f.Core().V1().PodTemplates().Informer(), log)
			if err != nil {
				b.Fatal(err)
			}
			p, err := New(cs, f.Core().V1().Pods().Informer(), f.Coordination().V1().Leases().Informer(), store, nil,
				clocktesting.NewFakeClock(time.Unix(1e9, 0)), log, prometheus.NewRegistry(), Options{Namespace: testNS, ReplicaID: "r1"})
			if err != nil {
				b.Fatal(err)
			}
			stop := make(chan struct{})
			defer func() { close(stop); f.Shutdown() }()
			f.Start(stop)
			if !cache.WaitForCacheSync(stop, f.Core().V1().Pods().Informer().HasSynced) {
				b.Fatal("cache did not sync")
			}
			b.ReportAllocs()
			for b.Loop() {
				c := p.candidates(prof)
				if len(c) != n || !p.claiming.start(c[0].Name) {
					b.Fatalf("%d candidates, want %d", len(c), n)
				}
				p.claiming.forget(c[0].Name)
			}
		})
	}
}
