package pool

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podgate/podgate/scheduler"
)

// namingClientset is a fake clientset that names created pods from their
// GenerateName and gives them a UID, as the API server does.
func namingClientset(objs ...runtime.Object) *fake.Clientset {
	cs := fake.NewClientset(objs...)
	var n atomic.Int64
	cs.PrependReactor("create", "pods", func(act k8stesting.Action) (bool, runtime.Object, error) {
		pod := act.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		if pod.Name == "" {
			i := n.Add(1)
			pod.Name = fmt.Sprintf("%scold%d", pod.GenerateName, i)
			pod.UID = types.UID(fmt.Sprintf("uid-cold%d", i))
		}
		return false, nil, nil // the tracker stores the named pod
	})
	return cs
}

// waitCold has alice wait for a cold pod in the background, and returns
// once that pod exists, with the channels the wait's result arrives on.
func waitCold(t *testing.T, p *Pool, cs *fake.Clientset) (<-chan *scheduler.Pod, <-chan error) {
	t.Helper()
	// The watch starts before the wait, so the creation cannot be missed.
	w, err := cs.CoreV1().Pods(testNS).Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	got, failed := createAsync(context.Background(), p, "alice")
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-w.ResultChan():
			if pod, ok := ev.Object.(*corev1.Pod); ok && pod.Annotations[AnnCold] == "true" {
				return got, failed
			}
		case err := <-failed:
			t.Fatalf("Create: %v", err)
		case <-timeout:
			t.Fatal("no cold pod was created")
		}
	}
}

// TestHandoffTakesFirstReadyIdlePod: a user waiting for their cold pod
// takes an idle pod that turns Ready first, and their cold pod, still
// starting, becomes an idle pod of the pool rather than being deleted.
func TestHandoffTakesFirstReadyIdlePod(t *testing.T) {
	prof := unitProfile(t)
	cs := namingClientset()
	p := newUnitPool(t, cs, prof)
	got, failed := waitCold(t, p, cs)

	if _, err := cs.CoreV1().Pods(testNS).Create(context.Background(), idleReadyPod("warm", prof), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := receive(t, "alice", got, failed)
	if pod.Ref.Name != "warm" || pod.Warm {
		t.Errorf("got %s (warm %v), want the idle pod, counted as a wait", pod.Ref.Name, pod.Warm)
	}
	p.bg.Wait()
	list, err := cs.CoreV1().Pods(testNS).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cold *corev1.Pod
	for i := range list.Items {
		if list.Items[i].Name != "warm" {
			cold = &list.Items[i]
		}
	}
	if cold == nil {
		t.Fatal("the cold pod was deleted, not given to the pool")
	}
	if cold.Labels[LabelState] != StateIdle || cold.Labels[LabelOwner] != "" || cold.Labels[LabelSession] != "" {
		t.Errorf("cold pod labels after the handoff: %v", cold.Labels)
	}
	for _, a := range []string{AnnUser, AnnRemoteAddr, AnnConnID, AnnClaimedAt} {
		if v, ok := cold.Annotations[a]; ok {
			t.Errorf("cold pod keeps annotation %s=%q", a, v)
		}
	}
	if v := cold.Annotations[AnnCold]; v == "true" {
		t.Errorf("cold pod is still marked cold: %s=%q", AnnCold, v)
	}
	if got := metricValue(p.metrics.claims.WithLabelValues(prof.Name, "handoff")); got != 1 {
		t.Errorf("handoff claims = %v, want 1", got)
	}
}

// TestHandoffDeletesColdPodItCannotRecycle: should making the cold pod idle
// fail, it is deleted, never left claimed by a user who is gone.
func TestHandoffDeletesColdPodItCannotRecycle(t *testing.T) {
	prof := unitProfile(t)
	cs := namingClientset()
	cs.PrependReactor("patch", "pods", func(act k8stesting.Action) (bool, runtime.Object, error) {
		if act.(k8stesting.PatchAction).GetName() != "warm" {
			return true, nil, errors.New("injected patch failure")
		}
		return false, nil, nil
	})
	p := newUnitPool(t, cs, prof)
	got, failed := waitCold(t, p, cs)
	if _, err := cs.CoreV1().Pods(testNS).Create(context.Background(), idleReadyPod("warm", prof), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	receive(t, "alice", got, failed)
	p.bg.Wait()
	if pods := podsOf(t, cs); len(pods) != 1 || pods[0].Name != "warm" {
		t.Errorf("pods left: %v, want only the claimed idle pod",
			describe(pods, func(pod corev1.Pod) string { return pod.Name + "=" + pod.Labels[LabelState] }))
	}
}

// TestHandoffGoesToLongestWaiter: with several users waiting and one idle
// pod turning Ready, the user who has waited longest gets it; the others
// keep waiting for their own pods.
func TestHandoffGoesToLongestWaiter(t *testing.T) {
	prof := unitProfile(t)
	cs := namingClientset()
	p := newUnitPool(t, cs, prof)
	first, failed := waitCold(t, p, cs)
	waitInLine(t, p, prof.Name, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	later := make(chan *scheduler.Pod, 4)
	for i, user := range []string{"bob", "carol", "dave", "erin"} {
		w, err := cs.CoreV1().Pods(testNS).Watch(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			pod, err := p.AwaitPod(ctx, "", scheduler.Claim{Identity: scheduler.Identity{User: user}, Session: user}, nil)
			if err == nil {
				later <- pod
			}
		}()
		// Each waiter is queued before the next one starts, so the
		// queue order is known. (A waiter joins the queue once its
		// pod's creation has returned, which the watch may show first.)
		for ev := range w.ResultChan() {
			if pod, ok := ev.Object.(*corev1.Pod); ok && pod.Annotations[AnnUser] == user {
				break
			}
		}
		w.Stop()
		waitInLine(t, p, prof.Name, i+2)
	}
	if _, err := cs.CoreV1().Pods(testNS).Create(context.Background(), idleReadyPod("warm", prof), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case pod := <-first:
		if pod.Ref.Name != "warm" {
			t.Errorf("the first waiter got %s", pod.Ref.Name)
		}
	case pod := <-later:
		t.Fatalf("a later waiter got %s before the first one", pod.Ref.Name)
	case err := <-failed:
		t.Fatalf("Create: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no waiter took the idle pod")
	}
}

// waitQueued waits until n users wait in profile's cold-pod queue. The
// queue has no event to wait on, so it is polled, briefly.
func waitInLine(t *testing.T, p *Pool, profile string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.queue.mu.Lock()
		got := len(p.queue.lines[profile])
		p.queue.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d users queued for a cold pod, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}
