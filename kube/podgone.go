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

// killSettle bounds how long podgate waits for the cluster to say why a
// pod ended under a user. The kubelet writes an eviction to the pod's
// status and to an Evicted event, both asynchronously, and kills the
// containers at the same time; podgate deletes a failed pod as soon as its
// informer sees it. So the user's stream can end before the status is
// written, and the pod can be gone before the event is: without the wait
// a user whose pod was evicted for disk use saw "exit 137" or "your pod
// went away" instead of the reason (seen on a loaded CI machine).
const killSettle = 3 * time.Second

// readPod reads the pod once, bounded by probeTimeout.
func (e *Executor) readPod(pod scheduler.PodRef) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	return e.pods.Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
}

// defaultContainer is container, or p's first container when it is empty
// (the container an exec without one runs in).
func defaultContainer(p *corev1.Pod, container string) string {
	if container == "" && len(p.Spec.Containers) > 0 {
		return p.Spec.Containers[0].Name
	}
	return container
}

// podEnded reports whether p is terminating, finished, or no longer runs
// container (the first one when empty), and the plain reason when the
// cluster ended it (see goneReason).
func podEnded(p *corev1.Pod, container string) (bool, string) {
	why := goneReason(p)
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return true, why
	}
	container = defaultContainer(p, container)
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

// reasonMayFollow reports whether an ended pod p whose status names no
// reason may still get one: container was stopped (terminated) while the
// pod is neither deleted nor finished, which is what an eviction or OOM
// kill in progress looks like before the kubelet's status arrives. A
// deleted or finished pod's status is final, and a container that is
// waiting (not started yet, or backing off) was not killed under a user.
func reasonMayFollow(p *corev1.Pod, container string) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return false
	}
	container = defaultContainer(p, container)
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == container {
			return cs.State.Terminated != nil
		}
	}
	return false
}

// finishedOnItsOwn reports whether p finished (Succeeded or Failed) with
// no reason in its status: what an evicted pod looks like when the
// kubelet's normal status sync, seeing its containers exit after the
// eviction's SIGTERM (an idle command exits 0), wrote the phase before the
// eviction's reason (CI saw "exited 0 (Completed)" and "your pod went
// away" for a disk-fill eviction). Its Evicted event is the reason then.
// A finished pod being deleted counts too: podgate deletes a failed pod as
// soon as its informer sees it.
func finishedOnItsOwn(p *corev1.Pod) bool {
	return (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) && goneReason(p) == ""
}

// podEnd reports whether the pod is missing, terminating, finished, or no
// longer runs its container, and the plain reason when the cluster ended
// it, or the error when the pod could not be read at all (an unreadable
// pod counts as present: the caller reports the original error rather
// than a guess).
//
// killed says the user's command died of a signal podgate did not send,
// or its stream broke while it ran.
// Then a pod that finished with no reason has its Evicted event awaited
// (see finishedOnItsOwn); then, and whenever the pod ended with its reason still to come (see
// reasonMayFollow), podEnd watches that one pod for up to killSettle from
// the version it read, and a pod that is gone without a status to read
// has its Evicted event awaited for the rest of that time. This runs only
// when a user's pod ended under them, never per session.
func (e *Executor) podEnd(pod scheduler.PodRef, killed bool) (bool, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), killSettle)
	defer cancel()
	p, err := e.readPod(pod)
	if apierrors.IsNotFound(err) {
		return true, e.awaitEvictionReason(ctx, pod), nil
	}
	if err != nil {
		e.log.Debug("reading pod to classify its end", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		return false, "", err
	}
	gone, why := podEnded(p, pod.Container)
	if why == "" && killed && finishedOnItsOwn(p) {
		return true, e.awaitEvictionReason(ctx, pod), nil
	}
	if why != "" || (gone && !reasonMayFollow(p, pod.Container)) || (!gone && !killed) {
		return gone, why, nil
	}
	w, err := e.pods.Pods(pod.Namespace).Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", pod.Name).String(),
		ResourceVersion: p.ResourceVersion,
	})
	if err != nil {
		return gone, "", nil
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return gone, "", nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return gone, "", nil
			}
			cur, isPod := ev.Object.(*corev1.Pod)
			switch {
			case ev.Type == watch.Deleted:
				if why := goneReason(cur); why != "" {
					return true, why, nil
				}
				return true, e.awaitEvictionReason(ctx, pod), nil
			case isPod && (ev.Type == watch.Modified || ev.Type == watch.Added):
				g, why := podEnded(cur, pod.Container)
				gone = gone || g
				if why == "" && killed && finishedOnItsOwn(cur) {
					return true, e.awaitEvictionReason(ctx, pod), nil
				}
				if why != "" || (g && !reasonMayFollow(cur, pod.Container)) {
					return gone, why, nil
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

// awaitEvictionReason reads the Evicted event of a pod that is already
// gone, waiting for it until ctx ends: podgate deletes a claimed pod as
// soon as it fails, so its status may be gone before the user's stream is
// classified, and the kubelet's event may not be written yet. It returns
// "" when there is none by then (the pod was deleted, not evicted) or the
// events cannot be read.
func (e *Executor) awaitEvictionReason(ctx context.Context, pod scheduler.PodRef) string {
	sel := fields.Set{"involvedObject.kind": "Pod", "involvedObject.name": pod.Name, "reason": "Evicted"}.String()
	lctx, cancel := context.WithTimeout(ctx, probeTimeout)
	evs, err := e.pods.Events(pod.Namespace).List(lctx, metav1.ListOptions{FieldSelector: sel})
	cancel()
	if err != nil {
		return ""
	}
	if n := len(evs.Items); n > 0 {
		return evictionSentence(evs.Items[n-1].Message)
	}
	w, err := e.pods.Events(pod.Namespace).Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: evs.ResourceVersion})
	if err != nil {
		return ""
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ""
		case ev, ok := <-w.ResultChan():
			if !ok {
				return ""
			}
			if got, isEvent := ev.Object.(*corev1.Event); isEvent && ev.Type != watch.Deleted {
				return evictionSentence(got.Message)
			}
		}
	}
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
