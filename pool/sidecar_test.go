package pool

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestSidecarEndIsAFailure: in a pod of several containers, one that ends,
// even successfully, leaves the pod unable to become Ready (restart policy
// Never), so the pod is a failure at once rather than a readiness timeout
// minutes later; an init container that ends is not.
func TestSidecarEndIsAFailure(t *testing.T) {
	ended := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	pod := &corev1.Pod{
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever},
		Status: corev1.PodStatus{
			Phase:                 corev1.PodRunning,
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", State: ended}},
			ContainerStatuses:     []corev1.ContainerStatus{{Name: "shell", State: running}, {Name: "proxy", State: running}},
		},
	}
	if f, bad := podFailure(pod); bad {
		t.Fatalf("running pod with a finished init container: %v", f)
	}
	pod.Status.ContainerStatuses[1].State = ended
	if f, bad := podFailure(pod); !bad || f.Reason != ReasonCrash {
		t.Fatalf("pod whose sidecar ended: %v %v, want %s", f, bad, ReasonCrash)
	}
}
