package kube

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podgate/podgate/scheduler"
)

// Plain reasons for a pod the cluster ended under a user, shown to the
// user as is (see scheduler.Refusal). They name the limit that was hit,
// never the pod, node or numbers, which are the operator's to read in the
// pod's status and events.
const (
	reasonDisk    = "your pod was stopped because it wrote more to disk than it may; please reconnect"
	reasonMemory  = "your pod was stopped because it used more memory than it may; please reconnect"
	reasonEvicted = "your pod was evicted by the cluster; please reconnect"
)

// goneReason says why the cluster ended pod p, when its status says so: an
// eviction (for disk, memory, or another node pressure) or a container
// killed for running out of memory. It returns "" when the status names no
// such reason, e.g. for a pod podgate or an operator deleted.
func goneReason(p *corev1.Pod) string {
	if p == nil {
		return ""
	}
	if p.Status.Reason == "Evicted" {
		msg := strings.ToLower(p.Status.Message)
		switch {
		case strings.Contains(msg, "ephemeral") || strings.Contains(msg, "emptydir") || strings.Contains(msg, "storage"):
			return reasonDisk
		case strings.Contains(msg, "memory"):
			return reasonMemory
		}
		return reasonEvicted
	}
	for _, cs := range p.Status.ContainerStatuses {
		for _, st := range []corev1.ContainerState{cs.State, cs.LastTerminationState} {
			if st.Terminated != nil && st.Terminated.Reason == "OOMKilled" {
				return reasonMemory
			}
		}
	}
	return ""
}

// goneError wraps err, which already wraps scheduler.ErrPodGone, in a
// Refusal carrying why when the cluster said why the pod ended, so that
// the user reads the reason instead of "your pod went away".
func goneError(err error, why string) error {
	if why == "" {
		return err
	}
	return &scheduler.Refusal{Err: err, Reason: why}
}

// podGoneError is the error for an operation on a pod that is gone.
func podGoneError(pod scheduler.PodRef, op string, why string, err error) error {
	if err == nil {
		return goneError(fmt.Errorf("%s in pod %s/%s: %w", op, pod.Namespace, pod.Name, scheduler.ErrPodGone), why)
	}
	return goneError(fmt.Errorf("%s in pod %s/%s: %w: %w", op, pod.Namespace, pod.Name, scheduler.ErrPodGone, err), why)
}
