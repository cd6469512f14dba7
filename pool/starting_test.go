package pool

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/podgate/podgate/scheduler"
)

// createAsync runs AwaitPod for user in the background.
func createAsync(ctx context.Context, p *Pool, user string) (<-chan *scheduler.Pod, <-chan error) {
	got, failed := make(chan *scheduler.Pod, 1), make(chan error, 1)
	go func() {
		pod, err := p.AwaitPod(ctx, "", scheduler.Claim{Identity: scheduler.Identity{User: user}, Session: user}, nil)
		if err != nil {
			failed <- err
			return
		}
		got <- pod
	}()
	return got, failed
}

// receive waits for a waiter's pod.
func receive(t *testing.T, who string, got <-chan *scheduler.Pod, failed <-chan error) *scheduler.Pod {
	t.Helper()
	select {
	case pod := <-got:
		return pod
	case err := <-failed:
		t.Fatalf("%s: AwaitPod: %v", who, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s got no pod", who)
	}
	return nil
}

// makeReady marks a pod Ready, as the kubelet would.
func makeReady(t *testing.T, cs *fake.Clientset, name string) {
	t.Helper()
	pod, err := cs.CoreV1().Pods(testNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if _, err := cs.CoreV1().Pods(testNS).UpdateStatus(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// podsOf lists the pods in the test namespace.
func podsOf(t *testing.T, cs *fake.Clientset) []corev1.Pod {
	t.Helper()
	list, err := cs.CoreV1().Pods(testNS).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// describe renders each pod for a failure message.
func describe(pods []corev1.Pod, f func(corev1.Pod) string) []string {
	out := make([]string, 0, len(pods))
	for _, pod := range pods {
		out = append(out, f(pod))
	}
	return out
}

// TestWaiterWithoutSlotCreatesNoPod: with every start slot taken, a user
// who misses creates no pod of their own. They queue behind the earlier
// waiter and take the first idle pod that turns Ready once it is their
// turn, so the node is never asked for more pods than MaxStarting.
func TestWaiterWithoutSlotCreatesNoPod(t *testing.T) {
	prof := unitProfile(t)
	cs := namingClientset()
	p := newUnitPool(t, cs, prof)
	p.opts.MaxStarting = 1
	alice, aliceFailed := waitCold(t, p, cs) // alice's pod takes the one slot
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bob, bobFailed := createAsync(ctx, p, "bob")
	waitInLine(t, p, prof.Name, 2)

	// An idle pod turns Ready: alice, first in the queue, takes it, and
	// her pod, still starting, joins the pool and keeps the slot.
	if _, err := cs.CoreV1().Pods(testNS).Create(context.Background(), idleReadyPod("warm", prof), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if pod := receive(t, "alice", alice, aliceFailed); pod.Ref.Name != "warm" {
		t.Fatalf("alice got %s, want the idle pod", pod.Ref.Name)
	}
	p.bg.Wait()
	var recycled string
	for _, pod := range podsOf(t, cs) {
		if pod.Name != "warm" {
			recycled = pod.Name
		}
	}
	if recycled == "" {
		t.Fatal("alice's pod did not join the pool")
	}
	// Her former pod turns Ready: now it is bob's.
	makeReady(t, cs, recycled)
	if pod := receive(t, "bob", bob, bobFailed); pod.Ref.Name != recycled {
		t.Errorf("bob got %s, want %s", pod.Ref.Name, recycled)
	}
	if pods := podsOf(t, cs); len(pods) != 2 {
		t.Errorf("pods: %v; want only the idle pod and alice's, bob never having had a slot",
			describe(pods, func(pod corev1.Pod) string { return pod.Name + " for " + pod.Annotations[AnnUser] }))
	}
}

// TestWaiterTakesFreedSlot: once the pod holding the only slot is Ready,
// the waiter queued without a pod creates its own.
func TestWaiterTakesFreedSlot(t *testing.T) {
	prof := unitProfile(t)
	cs := namingClientset()
	p := newUnitPool(t, cs, prof)
	p.opts.MaxStarting = 1
	alice, aliceFailed := waitCold(t, p, cs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, bobFailed := createAsync(ctx, p, "bob")
	waitInLine(t, p, prof.Name, 2)
	w, err := cs.CoreV1().Pods(testNS).Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	aliceName := podsOf(t, cs)[0].Name
	makeReady(t, cs, aliceName)
	if pod := receive(t, "alice", alice, aliceFailed); pod.Ref.Name != aliceName {
		t.Fatalf("alice got %s, want her own pod %s", pod.Ref.Name, aliceName)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-w.ResultChan():
			if pod, ok := ev.Object.(*corev1.Pod); ok && pod.Annotations[AnnUser] == "bob" {
				return
			}
		case err := <-bobFailed:
			t.Fatalf("bob: Create: %v", err)
		case <-timeout:
			t.Fatal("bob created no pod after the slot freed")
		}
	}
}
