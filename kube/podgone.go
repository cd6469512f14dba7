package kube

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/podgate/podgate/scheduler"
)

// killSettle bounds how long a command killed for no reason podgate knows
// waits for its pod's status to say why. The kubelet records an eviction
// in the pod's status and kills the containers at the same time, so the
// exec stream can end before the API server has the status: without the
// wait, a user whose pod was evicted for disk use saw only "exit 137".
const killSettle = 3 * time.Second

// readPod reads the pod once, bounded by probeTimeout.
func (e *Executor) readPod(pod scheduler.PodRef) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	return e.pods.Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
}

// podEnded reports whether p is terminating, finished, or no longer runs
// container (the first one when empty), and the plain reason when the
// cluster ended it (see goneReason).
func podEnded(p *corev1.Pod, container string) (bool, string) {
	why := goneReason(p)
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return true, why
	}
	if container == "" && len(p.Spec.Containers) > 0 {
		container = p.Spec.Containers[0].Name
	}
	inSpec := false
	for _, c := range p.Spec.Containers {
		inSpec = inSpec || c.Name == container
	}
	if !inSpec {
		return true, why
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == container {
			return cs.State.Running == nil, why
		}
	}
	return false, why
}

// podGoneAfterKill is podGone for a command that died of a signal podgate
// did not send: when the pod still looks alive, it watches that one pod
// for up to killSettle, from the version it read, for the status that
// explains the kill. This runs only on that rare path, never per session.
func (e *Executor) podGoneAfterKill(pod scheduler.PodRef) (bool, string) {
	p, err := e.readPod(pod)
	if apierrors.IsNotFound(err) {
		return true, e.evictionReason(pod)
	}
	if err != nil {
		return false, ""
	}
	if gone, why := podEnded(p, pod.Container); gone {
		return true, why
	}
	ctx, cancel := context.WithTimeout(context.Background(), killSettle)
	defer cancel()
	w, err := e.pods.Pods(pod.Namespace).Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", pod.Name).String(),
		ResourceVersion: p.ResourceVersion,
	})
	if err != nil {
		return false, ""
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, ""
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, ""
			}
			cur, isPod := ev.Object.(*corev1.Pod)
			switch {
			case ev.Type == watch.Deleted:
				if why := goneReason(cur); why != "" {
					return true, why
				}
				return true, e.evictionReason(pod)
			case isPod && (ev.Type == watch.Modified || ev.Type == watch.Added):
				if gone, why := podEnded(cur, pod.Container); gone {
					return true, why
				}
			}
		}
	}
}

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
		return evictionSentence(p.Status.Message)
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

// evictionSentence is the plain reason for an eviction whose kubelet
// message is msg.
func evictionSentence(msg string) string {
	msg = strings.ToLower(msg)
	switch {
	case strings.Contains(msg, "ephemeral") || strings.Contains(msg, "emptydir") || strings.Contains(msg, "storage"):
		return reasonDisk
	case strings.Contains(msg, "memory"):
		return reasonMemory
	}
	return reasonEvicted
}

// evictionReason reads the Evicted event of a pod that is already gone:
// podgate deletes a claimed pod as soon as it fails, so its status may be
// gone before the user's stream is classified, but the kubelet's event
// stays. It returns "" when there is none (the pod was deleted, not
// evicted) or it cannot be read.
func (e *Executor) evictionReason(pod scheduler.PodRef) string {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	evs, err := e.pods.Events(pod.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.kind": "Pod", "involvedObject.name": pod.Name, "reason": "Evicted"}.String(),
	})
	if err != nil || len(evs.Items) == 0 {
		return ""
	}
	return evictionSentence(evs.Items[len(evs.Items)-1].Message)
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
