package pool

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Reaping, as leader: pods nobody will release.
//
// Isolation invariant, part 4: a replica's reserved pods are never handed to
// another replica. When its liveness Lease lapses (confirmed by a live read,
// so a stale cache costs nobody a session), the leader deletes its reserved
// and claimed pods; they are not adopted, relabelled or claimed by anyone.
// The leader relabels only idle pods (relabelPatch tests state=idle), and an
// owner gives its own reserved pods back only after taking them out of its
// reserved set. The only ways out of a replica's hands are thus its own
// hand-out or give-back, and deletion.

// reap deletes released pods, idle pods of removed profiles, and the
// reserved and claimed pods of replicas whose liveness Lease lapsed (never
// this replica's own). Pods claimed less than a Lease period ago are spared,
// so that a replica the Lease informer does not show yet is not mistaken
// for a dead one; and right after an API outage every Lease looks lapsed
// because nobody could renew it, so owners get a Lease period to renew
// before their users' pods go. Each pass reads only the pods it may delete,
// through the informer's indexes.
func (p *Pool) reap(ctx context.Context, reps replicas, now time.Time) {
	p.reapParked(ctx, now)
	released, _ := p.pods.GetIndexer().ByIndex(indexState, StateReleased)
	for _, o := range released {
		if pod, ok := o.(*corev1.Pod); ok && pod.DeletionTimestamp == nil {
			p.deleteAsLeader(ctx, pod, reaped("its holder released it, but could not delete it"))
		}
	}
	for _, name := range p.pods.GetIndexer().ListIndexFuncValues(indexProfile) {
		if _, ok := p.profiles.Get(name); ok {
			continue
		}
		objs, _ := p.pods.GetIndexer().ByIndex(indexProfile, name)
		for _, o := range objs {
			if pod, ok := o.(*corev1.Pod); ok && pod.DeletionTimestamp == nil && pod.Labels[LabelState] == StateIdle {
				p.deleteAsLeader(ctx, pod, reaped(fmt.Sprintf("profile %q was removed", name)))
			}
		}
	}
	if !p.api.upFor(now, p.opts.LivenessLeaseDuration) {
		return
	}
	for _, owner := range p.pods.GetIndexer().ListIndexFuncValues(indexOwner) {
		if owner == p.opts.ReplicaID || reps.runs[owner] != "" || !p.leaseExpired(owner, now) {
			continue
		}
		p.reapOwner(ctx, owner, now)
	}
}

// reapOwner deletes the reserved and claimed pods of a replica whose Lease
// the cache shows lapsed, once a live read confirms it.
func (p *Pool) reapOwner(ctx context.Context, owner string, now time.Time) {
	objs, _ := p.pods.GetIndexer().ByIndex(indexOwner, owner)
	var doomed []*corev1.Pod
	for _, o := range objs {
		pod, ok := o.(*corev1.Pod)
		if !ok || pod.DeletionTimestamp != nil {
			continue
		}
		switch pod.Labels[LabelState] {
		case StateReserved:
			doomed = append(doomed, pod)
		case StateClaimed:
			since, ok := claimedAt(pod)
			if !ok {
				since = pod.CreationTimestamp.Time
			}
			if now.Sub(since) >= p.opts.LivenessLeaseDuration {
				doomed = append(doomed, pod)
			}
		}
	}
	if len(doomed) == 0 || !p.confirmExpired(ctx, owner, now) {
		return
	}
	for _, pod := range doomed {
		p.deleteAsLeader(ctx, pod, reaped("its owner, replica "+owner+", is gone (its liveness Lease lapsed)"))
	}
}

// deleteAsLeader deletes a pod in the background, once per pod until it
// leaves the cache. An idle pod is deleted only if it is unchanged since
// the cache saw it (a resourceVersion precondition): a replica that
// claimed it in between keeps it, and the next pass decides again.
func (p *Pool) deleteAsLeader(ctx context.Context, pod *corev1.Pod, why removal) {
	if !p.deleting.start(pod.Name) {
		return
	}
	p.log.Info("deleting pod", "pod", pod.Name, "profile", pod.Labels[LabelProfile], "reason", why.note)
	name, uid, rv := pod.Name, pod.UID, ""
	if pod.Labels[LabelState] == StateIdle {
		rv = pod.ResourceVersion
	}
	p.background(func() {
		err := p.deletePod(ctx, name, uid, rv)
		switch {
		case err == nil:
			p.removed(name, uid, why)
			return
		case apierrors.IsConflict(err):
			p.log.Info("not deleting pod: it changed since", "pod", name, "reason", why.note)
		default:
			p.log.Warn("deleting pod", "err", err)
		}
		p.deleting.forget(name)
	})
}
