package kube

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podgate/podgate/scheduler"
)

// TestGoneReason: an eviction or OOM kill reaches the user as a plain
// sentence naming the limit, and a pod that was merely deleted keeps the
// generic "went away".
func TestGoneReason(t *testing.T) {
	evicted := func(msg string) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: msg}}
	}
	oom := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
		Name: "guest", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}},
	}}}}
	for _, c := range []struct {
		pod  *corev1.Pod
		want string
	}{
		{evicted(`Usage of EmptyDir volume "podgate-home" exceeds the limit "64Mi". `), reasonDisk},
		{evicted("Pod ephemeral local storage usage exceeds the total limit of containers 64Mi. "), reasonDisk},
		{evicted(`Container guest exceeded its local ephemeral storage limit "64Mi". `), reasonDisk},
		{evicted("The node was low on resource: memory. "), reasonMemory},
		{evicted("The node had condition: [DiskPressure]. "), reasonEvicted},
		{oom, reasonMemory},
		{&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}, ""},
		{nil, ""},
	} {
		if got := goneReason(c.pod); got != c.want {
			t.Errorf("goneReason(%+v) = %q, want %q", c.pod, got, c.want)
		}
	}
	err := podGoneError(scheduler.PodRef{Namespace: "ns", Name: "p"}, "running command", reasonDisk, errors.New("exit code 137"))
	if !errors.Is(err, scheduler.ErrPodGone) || scheduler.UserMessage(err) != "podgate: "+reasonDisk {
		t.Errorf("podGoneError = %v, user sees %q", err, scheduler.UserMessage(err))
	}
	plain := podGoneError(scheduler.PodRef{Namespace: "ns", Name: "p"}, "running command", "", nil)
	if scheduler.UserMessage(plain) != "podgate: your pod went away, please reconnect" {
		t.Errorf("deleted pod: user sees %q", scheduler.UserMessage(plain))
	}
}

func runningPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", ResourceVersion: "5"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "guest"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "guest", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		}}},
	}
}

func evictedFor(p *corev1.Pod) *corev1.Pod {
	ev := p.DeepCopy()
	ev.Status = corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "Pod ephemeral local storage usage exceeds the total limit of containers 64Mi."}
	return ev
}

var guestRef = scheduler.PodRef{Namespace: "ns", Name: "p", Container: "guest"}

func quietExecutor(cs *fake.Clientset) *Executor {
	return &Executor{pods: cs.CoreV1(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// TestPodEndStatusLater: the kubelet writes an eviction's status after it
// killed the containers, so podgate can read the pod before the status
// says why: either still running (a command killed by a signal podgate did
// not send) or with its container stopped (a stream that broke). The
// status that arrives within killSettle still names the reason.
func TestPodEndStatusLater(t *testing.T) {
	stopped := runningPod()
	stopped.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137}}
	for _, c := range []struct {
		name   string
		pod    *corev1.Pod
		killed bool
	}{{"killed, pod still running", runningPod(), true}, {"container stopped", stopped, false}} {
		cs := fake.NewClientset(c.pod)
		fw := watch.NewFake()
		cs.PrependWatchReactor("pods", k8stesting.DefaultWatchReactor(fw, nil))
		go fw.Modify(evictedFor(c.pod))
		gone, why, err := quietExecutor(cs).podEnd(guestRef, c.killed)
		if !gone || why != reasonDisk || err != nil {
			t.Errorf("%s: podEnd = %v, %q, %v; want gone with the disk reason", c.name, gone, why, err)
		}
	}
}

// TestPodEndFinalNoWait: a pod that was deleted (not evicted), or whose
// container is waiting rather than killed, has no reason to come; the
// caller is answered at once, without a watch.
func TestPodEndFinalNoWait(t *testing.T) {
	deleted := runningPod()
	now := metav1.Now()
	deleted.DeletionTimestamp = &now
	deleted.Finalizers = []string{"keep"} // the fake tracker drops a finalizer-less pod with a deletion timestamp
	waiting := runningPod()
	waiting.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	for _, c := range []struct {
		name string
		pod  *corev1.Pod
	}{{"deleted", deleted}, {"container waiting", waiting}} {
		cs := fake.NewClientset(c.pod)
		watched := false
		cs.PrependWatchReactor("*", func(k8stesting.Action) (bool, watch.Interface, error) {
			watched = true
			return false, nil, nil
		})
		gone, why, err := quietExecutor(cs).podEnd(guestRef, false)
		if !gone || why != "" || err != nil || watched {
			t.Errorf("%s: podEnd = %v, %q, %v, watched %v; want gone, no reason, no watch", c.name, gone, why, err, watched)
		}
	}
}

// diskEvictedEvent is the kubelet's Evicted event for pod ns/p over its
// home directory's limit.
func diskEvictedEvent() *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "p.1", Namespace: "ns"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "p", Namespace: "ns"},
		Reason:         "Evicted",
		Message:        `Usage of EmptyDir volume "podgate-home" exceeds the limit "64Mi".`,
	}
}

// TestPodEndEventLater: a pod deleted right after its eviction has no
// status left to read, and the kubelet's Evicted event may be written
// after the user's stream ended; the event that arrives within killSettle
// still names the reason (CI saw "your pod went away" without the wait).
func TestPodEndEventLater(t *testing.T) {
	cs := fake.NewClientset()
	fw := watch.NewFake()
	cs.PrependWatchReactor("events", k8stesting.DefaultWatchReactor(fw, nil))
	go fw.Add(diskEvictedEvent())
	gone, why, err := quietExecutor(cs).podEnd(guestRef, true)
	if !gone || why != reasonDisk || err != nil {
		t.Errorf("podEnd = %v, %q, %v; want gone with the disk reason", gone, why, err)
	}
}

// TestPodEndDeletedNoEvent: a pod that is gone with no Evicted event
// within killSettle was deleted; the user gets the generic message.
func TestPodEndDeletedNoEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cs := fake.NewClientset()
		fw := watch.NewFake()
		cs.PrependWatchReactor("events", k8stesting.DefaultWatchReactor(fw, nil))
		t0 := time.Now()
		gone, why, err := quietExecutor(cs).podEnd(guestRef, true)
		if !gone || why != "" || err != nil {
			t.Errorf("podEnd = %v, %q, %v; want gone, no reason", gone, why, err)
		}
		if d := time.Since(t0); d != killSettle {
			t.Errorf("waited %v for the event, want killSettle (%v)", d, killSettle)
		}
		fw.Stop()
	})
}

// TestEvictionReasonFromEvent: a pod deleted right after its eviction has
// no status left to read; its Evicted event still names the reason.
func TestEvictionReasonFromEvent(t *testing.T) {
	cs := fake.NewClientset(diskEvictedEvent())
	gone, why, err := quietExecutor(cs).podEnd(guestRef, true)
	if !gone || why != reasonDisk || err != nil {
		t.Errorf("podEnd on a deleted, evicted pod = %v, %q, %v; want gone with the disk reason", gone, why, err)
	}
}

// TestPodEndFinishedThenEvent: an evicted pod whose phase the kubelet's
// status sync wrote first (Succeeded: the idle command exited 0 on the
// eviction's SIGTERM) has no reason in its status; a user whose command
// was killed gets the reason from the Evicted event that follows. A pod
// that finished without the user's command being killed is answered at
// once.
func TestPodEndFinishedThenEvent(t *testing.T) {
	finished := func() *corev1.Pod {
		p := runningPod()
		p.Status.Phase = corev1.PodSucceeded
		p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}
		return p
	}
	cs := fake.NewClientset(finished())
	fw := watch.NewFake()
	cs.PrependWatchReactor("events", k8stesting.DefaultWatchReactor(fw, nil))
	go fw.Add(diskEvictedEvent())
	gone, why, err := quietExecutor(cs).podEnd(guestRef, true)
	if !gone || why != reasonDisk || err != nil {
		t.Errorf("killed on a finished pod: podEnd = %v, %q, %v; want gone with the disk reason", gone, why, err)
	}

	cs = fake.NewClientset(finished())
	watched := false
	cs.PrependWatchReactor("*", func(k8stesting.Action) (bool, watch.Interface, error) {
		watched = true
		return false, nil, nil
	})
	gone, why, err = quietExecutor(cs).podEnd(guestRef, false)
	if !gone || why != "" || err != nil || watched {
		t.Errorf("not killed: podEnd = %v, %q, %v, watched %v; want gone, no reason, no watch", gone, why, err, watched)
	}
}
