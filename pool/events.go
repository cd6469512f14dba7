package pool

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/podgate/podgate/pool/profile"
)

// The pod informer's events, handed to each part in turn. Each handler is
// O(1) in the number of pods, but the pod index's O(log n) (podindex.go):
// no event scans the pool.

// onPod reacts to an added or updated pod. counted is false for pods from
// the informer's initial list, which are not new demand.
func (p *Pool) onPod(pod *corev1.Pod, counted bool) {
	if pod == nil {
		return
	}
	now := p.clock.Now()
	e, _ := p.profiles.Get(pod.Labels[LabelProfile])
	prof := e.Profile
	current := prof != nil && pod.Labels[LabelHash] == prof.Hash
	// The index first: a pod no longer in flight (seen below) is
	// already counted there (reconcile.go reads the pods in flight first).
	hash := ""
	if prof != nil {
		hash = prof.Hash
	}
	p.index.observe(pod, hash)
	p.creating.seen(pod.Name)
	if pod.Labels[LabelState] != StateIdle {
		p.relabeling.seen(pod.Name)
	}
	p.claiming.observe(pod, p.opts.ReplicaID)
	p.parkWaits.observe(pod)
	if current {
		p.demand.observe(prof, pod, counted, now)
	}
	readyForHandout := p.observeOwn(pod, prof, now)
	idleReady := current && pod.Labels[LabelState] == StateIdle && podReady(pod)
	if at, ok := p.queue.podChanged(pod, idleReady || readyForHandout); ok && prof != nil {
		p.metrics.podStart.WithLabelValues(prof.Name).Observe(now.Sub(at).Seconds())
	}
	p.poke()
}

// onPodDeleted forgets everything about a deleted pod.
func (p *Pool) onPodDeleted(o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	pod := podOf(o)
	if pod == nil {
		return
	}
	p.index.forget(pod.Name)
	p.creating.seen(pod.Name)
	p.relabeling.seen(pod.Name)
	p.deleting.forget(pod.Name)
	p.claiming.forget(pod.Name)
	p.demand.forget(pod.UID, p.clock.Now())
	p.reserved.drop(pod.Name).closeStream()
	p.queue.podGone(pod)
	p.poke()
}

// observeOwn keeps the reserved set in step with a pod event, and deletes
// this replica's pods that no run of it can serve any more. It reports
// whether the pod just became one this run can hand out (Ready and
// reserved for it), which wakes the users waiting for a pod.
//
// Isolation: only this run's reserved pods enter the set. A reserved or
// claimed pod of this replica id from another run (an earlier process,
// which may have handed it to a user before it died) is deleted, never
// adopted.
func (p *Pool) observeOwn(pod *corev1.Pod, prof *profile.Profile, now time.Time) bool {
	mine := pod.Labels[LabelOwner] == p.opts.ReplicaID
	state := pod.Labels[LabelState]
	ours := mine && state == StateReserved && pod.Labels[LabelRun] == p.run
	var doomed removal
	if ours {
		doomed = ownPodDoomed(pod, prof)
	}
	usable := ours && doomed == (removal{}) && pod.DeletionTimestamp == nil
	profName := pod.Labels[LabelProfile]
	prepare, gone := p.reserved.observe(pod.Name, profName, pod.UID, usable, podReady(pod), now)
	gone.closeStream()
	if prepare && p.execer != nil {
		p.prepQueue.Add(pod.Name)
	}
	if pod.DeletionTimestamp != nil || !mine {
		return prepare
	}
	switch {
	case doomed != (removal{}):
		p.deleteOwn(pod, doomed)
	case (state == StateReserved || state == StateClaimed) && pod.Labels[LabelRun] != "" && pod.Labels[LabelRun] != p.run:
		if state == StateReserved && prof != nil && pod.Labels[LabelHash] == prof.Hash && !p.deleting.has(pod.Name) {
			p.demand.inherit(prof, now)
		}
		p.deleteOwn(pod, reaped("reserved or claimed by an earlier run of replica "+p.opts.ReplicaID))
	case state == StateClaimed && pod.Labels[LabelRun] == "":
		// Claimed by a podgate that did not record runs: one from before
		// this process began is an earlier run's. The claim time is this
		// replica's own clock.
		if at, ok := claimedAt(pod); ok && at.Before(p.started) {
			p.deleteOwn(pod, reaped("claimed by an earlier run of replica "+p.opts.ReplicaID))
		}
	}
	return prepare
}

// deleteOwn deletes one of this replica's pods in the background, once
// per pod until it leaves the cache.
func (p *Pool) deleteOwn(pod *corev1.Pod, why removal) {
	if !p.deleting.start(pod.Name) {
		return
	}
	p.log.Info("deleting pod", "pod", pod.Name, "profile", pod.Labels[LabelProfile], "reason", why.note)
	name, uid := pod.Name, pod.UID
	p.background(func() {
		ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
		defer cancel()
		if err := p.deletePod(ctx, name, uid, ""); err != nil {
			p.log.Warn("deleting pod", "pod", name, "err", err)
			p.deleting.forget(name)
			return
		}
		p.removed(name, uid, why)
	})
}
