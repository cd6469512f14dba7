package pool

import (
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// podReady reports whether the pod's Ready condition is true and the pod is
// not being deleted.
func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// failure is why a pod cannot start: Reason is a short CamelCase word for
// metrics and logs; UserText is a safe sentence for an SSH user; Err is the
// reason's sentinel, which refusals wrap.
type failure struct {
	Reason   string
	UserText string
	Err      error
}

// Failure reasons, also the values of podgate_pod_create_failures_total's
// reason label.
const (
	ReasonImagePull        = "ImagePull"
	ReasonCrash            = "Crash"
	ReasonConfig           = "ContainerConfig"
	ReasonUnschedulable    = "Unschedulable"
	ReasonReadinessTimeout = "ReadinessTimeout"
	ReasonCreate           = "CreateError"
)

// Sentinel errors, one per failure reason. A refusal for a profile that
// cannot start pods wraps both scheduler.ErrProfileDegraded and one of
// these, so that callers and tests can tell with errors.Is why, not only
// that, it was refused. Their text is the reason word, as in metrics.
var (
	ErrImagePull        = errors.New(ReasonImagePull)
	ErrCrash            = errors.New(ReasonCrash)
	ErrContainerConfig  = errors.New(ReasonConfig)
	ErrUnschedulable    = errors.New(ReasonUnschedulable)
	ErrReadinessTimeout = errors.New(ReasonReadinessTimeout)
	ErrCreateRejected   = errors.New(ReasonCreate)
)

var (
	failImagePull     = failure{ReasonImagePull, "the image for this environment cannot be pulled", ErrImagePull}
	failCrash         = failure{ReasonCrash, "this environment's container exits at start", ErrCrash}
	failConfig        = failure{ReasonConfig, "this environment's container cannot be created", ErrContainerConfig}
	failUnschedulable = failure{ReasonUnschedulable, "no node has room for this environment", ErrUnschedulable}
	// failNoReadyNode is unschedulable too, but because the nodes are down
	// (their kubelets stopped reporting), not full: the user is told so.
	failNoReadyNode = failure{ReasonUnschedulable, "the cluster has no working node right now", ErrUnschedulable}
	failTimeout     = failure{ReasonReadinessTimeout, "this environment does not become ready", ErrReadinessTimeout}
	failCreate      = failure{ReasonCreate, "this environment's pods are rejected by the cluster", ErrCreateRejected}
)

// podFailure classifies a pod that will never become Ready on its own. It
// looks only at the pod's status, so every replica reaches the same verdict
// from its informer cache.
func podFailure(p *corev1.Pod) (failure, bool) {
	if p.DeletionTimestamp != nil {
		// A pod being deleted ends for that reason, not its own.
		return failure{}, false
	}
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return failCrash, true
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			if nodesDown(c.Message) {
				return failNoReadyNode, true
			}
			return failUnschedulable, true
		}
	}
	// Under restart policy Never a regular container that ended, even
	// with status 0 (a sidecar whose process exits), never runs again,
	// so the pod can never be Ready: readiness is the whole pod's. Init
	// containers are meant to end.
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Terminated != nil && p.Spec.RestartPolicy == corev1.RestartPolicyNever {
			return failCrash, true
		}
	}
	statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, cs := range statuses {
		if t := cs.State.Terminated; t != nil && p.Spec.RestartPolicy == corev1.RestartPolicyNever && t.ExitCode != 0 {
			return failCrash, true
		}
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable":
			return failImagePull, true
		case "CrashLoopBackOff":
			return failCrash, true
		case "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
			return failConfig, true
		}
	}
	return failure{}, false
}

// failureDetail is what Kubernetes says about why pod cannot start (the
// scheduler's message, or a container's waiting or termination message),
// for the operator log; it never reaches users.
func failureDetail(p *corev1.Pod) string {
	var parts []string
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Message != "" {
			parts = append(parts, c.Message)
		}
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Message != "":
			parts = append(parts, cs.Name+": "+cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			t := cs.State.Terminated
			parts = append(parts, strings.TrimSpace(fmt.Sprintf("%s: exited %d (%s) %s", cs.Name, t.ExitCode, t.Reason, t.Message)))
		}
	}
	const max = 400
	s := strings.TrimSpace(strings.Join(parts, "; "))
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// nodesDown reports whether the scheduler's unschedulable message blames
// only nodes that are not ready or unreachable (the taints the node
// lifecycle controller puts on a node whose kubelet stopped reporting),
// rather than capacity.
func nodesDown(msg string) bool {
	down := strings.Contains(msg, corev1.TaintNodeNotReady) || strings.Contains(msg, corev1.TaintNodeUnreachable)
	full := strings.Contains(msg, "Insufficient ") || strings.Contains(msg, "Too many pods")
	return down && !full
}

// waitPhase describes a starting pod in a few safe words for progress
// messages.
func waitPhase(p *corev1.Pod) string {
	if p.Spec.NodeName == "" {
		return "scheduling"
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason == "ContainerCreating" {
			return "starting container"
		}
		if cs.State.Running != nil {
			return "waiting for readiness"
		}
	}
	return "starting"
}

// labelValue makes s safe as a label value: at most 63 characters of
// [A-Za-z0-9-_.], beginning and ending with an alphanumeric.
func labelValue(s string) string {
	b := []byte(s)
	out := b[:0:0]
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
			out = append(out, c)
		default:
			out = append(out, '_')
		}
	}
	if len(out) > 63 {
		out = out[:63]
	}
	return strings.Trim(string(out), "-_.")
}

// claimedAt reads the claim time annotation; ok is false when it is absent
// or malformed.
func claimedAt(p *corev1.Pod) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, p.Annotations[AnnClaimedAt])
	return t, err == nil
}
