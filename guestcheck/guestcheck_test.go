package guestcheck

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/podgate/podgate/pool"
	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/scheduler"
)

// fakeExec answers the script with out and records where it ran.
type fakeExec struct {
	out  string
	runs chan string // pod names, one per exec
}

func (f *fakeExec) Exec(_ context.Context, pod scheduler.PodRef, cmd scheduler.Command) (scheduler.ExitStatus, error) {
	if cmd.Argv[len(cmd.Argv)-1] != "10.0.0.9" {
		return scheduler.ExitStatus{}, fmt.Errorf("host IP not passed: %q", cmd.Argv)
	}
	_, _ = io.WriteString(cmd.Stdout, f.out)
	f.runs <- pod.Name + "/" + pod.Container
	return scheduler.ExitStatus{}, nil
}

type profiles map[string]*profile.Profile

func (p profiles) Get(name string) (profile.Entry, bool) {
	pr, ok := p[name]
	return profile.Entry{Name: name, Profile: pr}, ok
}

func readyPod(name, hash string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "guests", Labels: map[string]string{
			pool.LabelManaged: "true", pool.LabelProfile: "default", pool.LabelHash: hash,
		}},
		Status: corev1.PodStatus{HostIP: "10.0.0.9", Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

// syncBuf is a log sink safe for the worker and the test.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCheckerOncePerTemplate: the first Ready pod of the current template
// is checked, results become the gauge and a warning per failed check,
// and further pods of that template are not checked again.
func TestCheckerOncePerTemplate(t *testing.T) {
	prof, err := profile.FromConfig(profile.DefaultProfileConfig{Image: "img"})
	if err != nil {
		t.Fatal(err)
	}
	cs := fake.NewClientset(readyPod("a", prof.Hash), readyPod("stale", "old"))
	f := informers.NewSharedInformerFactory(cs, 0)
	inf := f.Core().V1().Pods().Informer()
	out := "banner\npodgate-check pids fail pids.max=max: no PID limit\npodgate-check memory pass memory limit=536870912 bytes\n" +
		"podgate-check sa_token pass none\npodgate-check non_root pass uid 1000\n" +
		"podgate-check api_service fail TCP connect to 10.96.0.1:443 succeeded\npodgate-check kubelet unknown no bash\n"
	ex := &fakeExec{out: out, runs: make(chan string, 10)}
	logs := &syncBuf{}
	reg := prometheus.NewRegistry()
	c, err := New(inf, profiles{"default": prof}, ex, slog.New(slog.NewTextHandler(logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	f.Start(ctx.Done())
	defer f.Shutdown()
	go func() { done <- c.Run(ctx) }()

	if got := <-ex.runs; got != "a/guest" {
		t.Fatalf("checked %q, want pod a's guest container", got)
	}
	// Run returns once the check in progress has recorded its results.
	cancel()
	<-done
	got := gauges(t, reg)
	want := map[string]float64{"pids": 0, "memory": 1, "sa_token": 1, "non_root": 1, "api_service": 0}
	if len(got) != len(want) {
		t.Errorf("series %v, want %v (the unknown kubelet probe sets none)", got, want)
	}
	for check, v := range want {
		if got[check] != v {
			t.Errorf("podgate_guest_check{check=%q} = %v, want %v", check, got[check], v)
		}
	}
	if n := strings.Count(logs.String(), "guest sandbox check failed"); n != 2 {
		t.Errorf("%d failure warnings, want one per failed check:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "podPidsLimit") {
		t.Errorf("the pids warning does not say how to fix it:\n%s", logs.String())
	}
}

// TestEnqueueOnlyUncheckedCurrentTemplates: the handler queues a Ready
// pod only when its template is its profile's current one and has not
// been checked.
func TestEnqueueOnlyUncheckedCurrentTemplates(t *testing.T) {
	prof, err := profile.FromConfig(profile.DefaultProfileConfig{Image: "img"})
	if err != nil {
		t.Fatal(err)
	}
	profs := profiles{"default": prof}
	f := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	c, err := New(f.Core().V1().Pods().Informer(), profs, &fakeExec{}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer c.queue.ShutDown()
	c.claim("default/" + prof.Hash) // checked already
	notReady := readyPod("n", "x")
	notReady.Status.Conditions = nil
	for _, p := range []*corev1.Pod{readyPod("b", prof.Hash), readyPod("stale", "old"), notReady} {
		c.enqueue(p)
	}
	if n := c.queue.Len(); n != 0 {
		t.Errorf("%d pods queued: a checked template, a stale one, a pod not Ready", n)
	}
	next, err := profile.FromConfig(profile.DefaultProfileConfig{Image: "img2"})
	if err != nil {
		t.Fatal(err)
	}
	profs["default"] = next
	c.enqueue(readyPod("c", next.Hash))
	if n := c.queue.Len(); n != 1 {
		t.Errorf("a Ready pod of a new, unchecked template: %d queued, want 1", n)
	}
}

func TestParse(t *testing.T) {
	rs := parse("podgate-check pids pass pids.max=512\npodgate-check bogus pass x\npodgate-check memory maybe x\nnoise\n")
	if len(rs) != 1 || rs[0] != (Result{Check: "pids", Pass: true, Known: true, Detail: "pids.max=512"}) {
		t.Errorf("parse = %+v", rs)
	}
}

// gauges returns podgate_guest_check{profile="default"} by check.
func gauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["profile"] == "default" {
				out[labels["check"]] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}
