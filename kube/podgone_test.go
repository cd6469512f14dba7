package kube

import (
	"errors"
	"io"
	"log/slog"
	"testing"

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

// TestPodGoneAfterKill: the stream of a command the kubelet killed for an
// eviction can end before the pod's status says so; the status that
// arrives within killSettle still names the reason.
func TestPodGoneAfterKill(t *testing.T) {
	running := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", ResourceVersion: "5"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "guest"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "guest", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		}}},
	}
	cs := fake.NewClientset(running)
	fw := watch.NewFake()
	cs.PrependWatchReactor("pods", k8stesting.DefaultWatchReactor(fw, nil))
	e := &Executor{pods: cs.CoreV1(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	evicted := running.DeepCopy()
	evicted.Status = corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "Pod ephemeral local storage usage exceeds the total limit of containers 64Mi."}
	go fw.Modify(evicted)
	gone, why := e.podGoneAfterKill(scheduler.PodRef{Namespace: "ns", Name: "p", Container: "guest"})
	if !gone || why != reasonDisk {
		t.Errorf("podGoneAfterKill = %v, %q; want gone with the disk reason", gone, why)
	}
}

// TestEvictionReasonFromEvent: a pod deleted right after its eviction has
// no status left to read; its Evicted event still names the reason.
func TestEvictionReasonFromEvent(t *testing.T) {
	cs := fake.NewClientset(&corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "p.1", Namespace: "ns"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "p", Namespace: "ns"},
		Reason:         "Evicted",
		Message:        `Usage of EmptyDir volume "podgate-home" exceeds the limit "64Mi".`,
	})
	e := &Executor{pods: cs.CoreV1(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	gone, why := e.podGoneAfterKill(scheduler.PodRef{Namespace: "ns", Name: "p", Container: "guest"})
	if !gone || why != reasonDisk {
		t.Errorf("podGoneAfterKill on a deleted, evicted pod = %v, %q; want gone with the disk reason", gone, why)
	}
}
