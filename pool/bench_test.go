package pool

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
			p, _ := benchPool(b, prof, objs, clocktesting.NewFakeClock(time.Unix(1e9, 0)))
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

// BenchmarkSyncPass measures one leader sync pass over a profile of n
// Ready idle pods at its target (nothing to create, relabel or delete):
// the cost every pod event and every Resync tick pays. Before the pod
// index (podindex.go) it walked every pod.
func BenchmarkSyncPass(b *testing.B) {
	for _, n := range []int{500, 5000} {
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			prof, err := profile.FromConfig(profile.DefaultProfileConfig{Image: "img", PoolMin: n})
			if err != nil {
				b.Fatal(err)
			}
			objs := make([]runtime.Object, n)
			start := time.Unix(1e9, 0)
			for i := range objs {
				pod := idleReadyPod(fmt.Sprintf("p%05d", i), prof)
				pod.CreationTimestamp = metav1.NewTime(start.Add(time.Duration(i) * time.Millisecond))
				objs[i] = pod
			}
			clk := clocktesting.NewFakeClock(start.Add(time.Minute))
			p, cs := benchPool(b, prof, objs, clk)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p.lead.set(ctx, 1)
			b.ReportAllocs()
			for b.Loop() {
				p.sync(clk.Now())
			}
			b.StopTimer()
			for _, a := range cs.Actions() {
				if v := a.GetVerb(); v != "list" && v != "watch" {
					b.Fatalf("the pass called %s %s: it is not at rest", v, a.GetResource().Resource)
				}
			}
			if got := len(p.candidates(prof)); got != n {
				b.Fatalf("%d candidates, want %d", got, n)
			}
		})
	}
}

// benchPool is a pool over a fake clientset holding objs, its informers
// started and its handlers synced (stopped when b ends), with its clock clk.
func benchPool(b *testing.B, prof *profile.Profile, objs []runtime.Object, clk *clocktesting.FakeClock) (*Pool, *fake.Clientset) {
	b.Helper()
	cs := fake.NewClientset(objs...)
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(testNS))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := profile.NewStore(prof, f.Core().V1().PodTemplates().Informer(), log)
	if err != nil {
		b.Fatal(err)
	}
	p, err := New(cs, f.Core().V1().Pods().Informer(), f.Coordination().V1().Leases().Informer(), store, nil,
		clk, log, prometheus.NewRegistry(), Options{Namespace: testNS, ReplicaID: "r1"})
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	b.Cleanup(func() { close(stop); f.Shutdown() })
	f.Start(stop)
	if !cache.WaitForCacheSync(stop, f.Core().V1().Pods().Informer().HasSynced, p.podsHandled) {
		b.Fatal("cache did not sync")
	}
	return p, cs
}
