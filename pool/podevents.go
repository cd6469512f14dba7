package pool

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podgate/podgate/scheduler"
)

// Events the pool records on the pods it deletes (see scheduler/events.go
// for every reason), so that `kubectl describe pod`, or the pod's events
// once it is gone, tell an operator why the pool took it away.
//
// Each pod is deleted by exactly one party (an idle pod by the leader, a
// reserved pod by its owner, a waiter's own pod by the waiter's replica),
// so the Event is recorded once, by that party, after the delete went
// through: a delete that lost to a claim records nothing.

// removal is why the pool deletes a pod: the Event's reason (EventReaped,
// or EventProfileDegraded for a pod that cannot start) and its note, which
// is also the log line's reason. The zero removal means the pod stays.
type removal struct {
	reason scheduler.EventReason
	note   string
}

// reaped is a removal of a pod nobody needs, for the reason note.
func reaped(note string) removal {
	return removal{reason: scheduler.EventReaped, note: note}
}

// cannotStart is the removal of a pod that showed why its profile cannot
// start pods: the note names the profile, the failure and what Kubernetes
// said about it.
func cannotStart(profileName string, f failure, pod *corev1.Pod) removal {
	note := fmt.Sprintf("profile %q is degraded: %s (%s); the pod is deleted", profileName, f.Reason, f.UserText)
	if d := failureDetail(pod); d != "" {
		note += ": " + d
	}
	return removal{reason: scheduler.EventProfileDegraded, note: note}
}

// podEvent records an Event on the pod of that name and UID in the pool's
// namespace.
func (p *Pool) podEvent(name string, uid types.UID, reason scheduler.EventReason, note string) {
	p.events.PodEvent(scheduler.PodRef{Namespace: p.opts.Namespace, Name: name}, string(uid), reason, note)
}

// removed records a removal's Event once its delete went through.
func (p *Pool) removed(name string, uid types.UID, why removal) {
	if why.reason != "" {
		p.podEvent(name, uid, why.reason, why.note)
	}
}
