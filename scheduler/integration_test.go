package scheduler_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/utils/clock"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/pool"
	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/scheduler"
)

// nopExecer stands in for package kube: these tests are about which pod a
// connection gets and when it goes away, not about exec.
type nopExecer struct{}

func (nopExecer) Prepare(context.Context, scheduler.PodRef, bool) (scheduler.Prepared, error) {
	return nil, io.EOF
}
func (nopExecer) Exec(_ context.Context, _ scheduler.PodRef, c scheduler.Command) (scheduler.ExitStatus, error) {
	_, _ = io.WriteString(c.Stdout, "ok\n")
	return scheduler.ExitStatus{}, nil
}
func (nopExecer) DialTCP(context.Context, scheduler.PodRef, uint16) (net.Conn, error) {
	return nil, io.EOF
}
func (nopExecer) Relay(context.Context, scheduler.PodRef, string, uint16, func([]netip.Addr) (netip.Addr, error)) (net.Conn, error) {
	return nil, io.EOF
}

// start wires a pool and a scheduler against the test namespace like cmd
// does, with one default profile on the busybox image.
func start(t *testing.T, env *kubetest.Env, cfg profile.DefaultProfileConfig) *scheduler.Scheduler {
	t.Helper()
	cfg.Image, cfg.CPURequest, cfg.MemRequest, cfg.MaxWait = kubetest.BusyboxImage, "1m", "8Mi", 2*time.Minute
	def, err := profile.FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	factory := func(sel string) informers.SharedInformerFactory {
		return informers.NewSharedInformerFactoryWithOptions(env.Client, 0, informers.WithNamespace(env.Namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel }))
	}
	podF, leaseF, ptF := factory(pool.ManagedSelector), factory(pool.ReplicaSelector), factory(profile.LabelProfile)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := profile.NewStore(def, ptF.Core().V1().PodTemplates().Informer(), log)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.New(env.Client, podF.Core().V1().Pods().Informer(), leaseF.Coordination().V1().Leases().Informer(),
		store, nopExecer{}, clock.RealClock{}, log, prometheus.NewRegistry(), pool.Options{
			Namespace: env.Namespace, ReplicaID: "r1",
			LeaderLeaseDuration: 4 * time.Second, LeaderRenewDeadline: 3 * time.Second, LeaderRetryPeriod: 500 * time.Millisecond,
			LivenessLeaseDuration: 3 * time.Second, Resync: 500 * time.Millisecond,
		})
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.New(p, nopExecer{}, clock.RealClock{}, log, prometheus.NewRegistry(), scheduler.Options{Parking: p})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	for _, f := range []informers.SharedInformerFactory{podF, leaseF, ptF} {
		f.Start(ctx.Done())
	}
	done := make(chan struct{}, 3)
	go func() { _ = store.Run(ctx); done <- struct{}{} }()
	go func() { _ = p.Run(ctx); done <- struct{}{} }()
	go func() { _ = s.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		for range 3 {
			<-done
		}
		for _, f := range []informers.SharedInformerFactory{podF, leaseF, ptF} {
			f.Shutdown()
		}
	})
	return s
}

// waitNoPods waits, through a watch, until the namespace has no managed
// pods left.
func waitNoPods(t *testing.T, env *kubetest.Env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		list, err := env.Client.CoreV1().Pods(env.Namespace).List(ctx, metav1.ListOptions{LabelSelector: pool.ManagedSelector})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) == 0 {
			return
		}
		w, err := env.Client.CoreV1().Pods(env.Namespace).Watch(ctx, metav1.ListOptions{
			LabelSelector: pool.ManagedSelector, ResourceVersion: list.ResourceVersion,
		})
		if err != nil {
			t.Fatal(err)
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Deleted {
				break
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			t.Fatalf("pods left behind: %d", len(list.Items))
		}
	}
}

// TestIntegrationSessionModeLeavesNoPods runs three sessions of one
// session-mode connection on the real cluster: each gets a pod of its own
// (cold, the pool is empty) and no pod is left once they end.
func TestIntegrationSessionModeLeavesNoPods(t *testing.T) {
	env := kubetest.New(t)
	s := start(t, env, profile.DefaultProfileConfig{Mode: scheduler.ModeSession})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, err := s.Attach(ctx, scheduler.Identity{User: "alice", ConnID: "c1", AcceptedAt: time.Now()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := a.Run(ctx, scheduler.Process{Kind: scheduler.KindExec, Command: "true", Stdout: io.Discard}); err != nil {
			t.Fatal(err)
		}
	}
	_ = a.Close()
	waitNoPods(t, env)
}

// TestIntegrationReconnectWindow: on the real cluster, a connection that
// closes and comes back within the window gets the same pod; another
// identity never does; with the window over, the pod is deleted.
func TestIntegrationReconnectWindow(t *testing.T) {
	env := kubetest.New(t)
	// The window outlasts bob's login even when it waits for a cold pod
	// on a loaded machine (5 s did not: alice came back after it).
	s := start(t, env, profile.DefaultProfileConfig{PoolMin: 2, ReconnectWindow: 20 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice := scheduler.Identity{User: "alice", ConnID: "c1", AcceptedAt: time.Now()}
	a1, err := s.Attach(ctx, alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := claimedBy(t, env, "alice")
	_ = a1.Close()

	bob, err := s.Attach(ctx, scheduler.Identity{User: "bob", ConnID: "c2", AcceptedAt: time.Now()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := claimedBy(t, env, "bob"); got == first {
		t.Fatalf("bob got alice's pod %s", got)
	}
	alice.ConnID = "c3"
	a2, err := s.Attach(ctx, alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := claimedBy(t, env, "alice"); got != first {
		t.Errorf("alice reconnected to %q, want her pod %q", got, first)
	}
	_ = a2.Close()
	_ = bob.Close()
	// After the window both pods go; the pool keeps only its idle ones.
	waitGone(t, env, first)
}

// claimedBy returns the one pod claimed for user; a second one would mean
// a reconnect did not get the parked pod back.
func claimedBy(t *testing.T, env *kubetest.Env, user string) string {
	t.Helper()
	list, err := env.Client.CoreV1().Pods(env.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: pool.LabelState + "=claimed"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range list.Items {
		if p.Annotations[pool.AnnUser] == user && p.DeletionTimestamp == nil {
			names = append(names, p.Name)
		}
	}
	if len(names) != 1 {
		t.Fatalf("pods claimed for %s: %v, want exactly one", user, names)
	}
	return names[0]
}

// waitGone waits, through a watch, until the named pod is deleted.
func waitGone(t *testing.T, env *kubetest.Env, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w, err := env.Client.CoreV1().Pods(env.Namespace).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if ev.Type == watch.Deleted {
			return
		}
	}
	t.Fatalf("pod %s not deleted after the reconnect window", name)
}
