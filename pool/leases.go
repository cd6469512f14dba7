package pool

import (
	"context"
	"fmt"
	"math"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/ptr"
)

// renewLiveness writes this replica's liveness Lease, creating it when
// needed. prev is the object last written, or nil; the updated object is
// returned for the next renewal.
func (p *Pool) renewLiveness(ctx context.Context, prev *coordv1.Lease) (*coordv1.Lease, error) {
	leases := p.client.CoordinationV1().Leases(p.opts.Namespace)
	name := livenessLeaseName(p.opts.ReplicaID)
	now := metav1.NewMicroTime(p.clock.Now())
	secs := int32(max(1, math.Ceil(p.opts.LivenessLeaseDuration.Seconds())))
	if prev != nil {
		l := prev.DeepCopy()
		l.Spec.RenewTime = &now
		got, err := leases.Update(ctx, l, metav1.UpdateOptions{})
		if err == nil {
			return got, nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return prev, fmt.Errorf("renewing lease %q: %w", name, err)
		}
	}
	cur, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l := &coordv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.opts.Namespace, Labels: map[string]string{LabelReplica: "true"}},
			Spec: coordv1.LeaseSpec{
				HolderIdentity:       ptr.To(p.opts.ReplicaID),
				LeaseDurationSeconds: &secs,
				AcquireTime:          &now,
				RenewTime:            &now,
			},
		}
		got, err := leases.Create(ctx, l, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("creating lease %q: %w", name, err)
		}
		return got, nil
	}
	if err != nil {
		return prev, fmt.Errorf("reading lease %q: %w", name, err)
	}
	l := cur.DeepCopy()
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	l.Labels[LabelReplica] = "true"
	l.Spec.HolderIdentity = ptr.To(p.opts.ReplicaID)
	l.Spec.LeaseDurationSeconds = &secs
	l.Spec.RenewTime = &now
	got, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		return prev, fmt.Errorf("renewing lease %q: %w", name, err)
	}
	return got, nil
}

// keepLiveness renews the liveness Lease until ctx ends. It does not delete
// the Lease on the way out: a replica that stops uncleanly and one that
// stops cleanly look the same, and the leader reaps only after expiry.
func (p *Pool) keepLiveness(ctx context.Context, lease *coordv1.Lease) error {
	t := p.clock.NewTicker(p.opts.LivenessRenew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		// Each renewal gets one renewal period: a request stuck on an API
		// server that is coming back must not hold up the next renewal
		// while the Lease runs out.
		rctx, cancel := context.WithTimeout(ctx, p.opts.LivenessRenew)
		l, err := p.renewLiveness(rctx, lease)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.log.Warn("renewing liveness lease", "err", err)
		}
		if l != nil {
			lease = l
		}
	}
}

// confirmExpired reads a replica's liveness Lease from the API server,
// not the cache, before its users' pods are deleted: after an outage the
// Lease informer may hold old copies for a while (its watch is re-listed
// with backoff), and a stale copy must not cost anyone their session. Any
// error means no: reaping can wait for the next pass.
func (p *Pool) confirmExpired(ctx context.Context, replica string, now time.Time) bool {
	ctx, cancel := context.WithTimeout(ctx, p.opts.LivenessRenew)
	defer cancel()
	l, err := p.client.CoordinationV1().Leases(p.opts.Namespace).Get(ctx, livenessLeaseName(replica), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true
	}
	if err != nil {
		return false
	}
	return leaseLapsed(l, now)
}

// leaseExpired reports whether a replica's liveness Lease is missing or
// past its renew time plus duration, as the Lease informer sees it.
func (p *Pool) leaseExpired(replica string, now time.Time) bool {
	o, ok, err := p.leases.GetStore().GetByKey(p.opts.Namespace + "/" + livenessLeaseName(replica))
	if err != nil || !ok {
		return true
	}
	l, ok := o.(*coordv1.Lease)
	return !ok || leaseLapsed(l, now)
}

// leaseLapsed reports whether a Lease is past its renew time plus its
// duration (or says neither).
func leaseLapsed(l *coordv1.Lease, now time.Time) bool {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return true
	}
	until := l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second)
	return now.After(until)
}

// elect takes part in leader election until ctx ends. While this replica
// leads, leadCtx is set and the sync loop replenishes and reaps with it.
func (p *Pool) elect(ctx context.Context) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: LeaderLeaseName, Namespace: p.opts.Namespace},
		Client:     p.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: p.opts.ReplicaID},
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   p.opts.LeaderLeaseDuration,
		RenewDeadline:   p.opts.LeaderRenewDeadline,
		RetryPeriod:     p.opts.LeaderRetryPeriod,
		ReleaseOnCancel: true,
		Name:            LeaderLeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				p.log.Info("leading the pool", "replica", p.opts.ReplicaID)
				p.startLeading(lctx)
			},
			OnStoppedLeading: func() {
				p.log.Info("stopped leading the pool", "replica", p.opts.ReplicaID)
				p.stopLeading()
			},
		},
	})
	if err != nil {
		return fmt.Errorf("creating leader elector: %w", err)
	}
	for ctx.Err() == nil {
		// Run returns when leadership is lost; stand again.
		le.Run(ctx)
	}
	return nil
}

// startLeading records a leadership term's context and asks for a sync
// pass; stopLeading ends the term.
func (p *Pool) startLeading(lctx context.Context) {
	now := p.clock.Now()
	p.mu.Lock()
	p.leadCtx = lctx
	for _, prof := range p.profiles.Valid() {
		p.sizerLocked(prof, now).adopt(p.idleOfTemplate(prof.Name, prof.Hash), now)
	}
	p.mu.Unlock()
	p.poke()
}

// idleOfTemplate counts the cached idle pods of a profile's current
// template that are not being deleted.
func (p *Pool) idleOfTemplate(profile, hash string) int {
	objs, _ := p.pods.GetIndexer().ByIndex(indexProfile, profile)
	n := 0
	for _, o := range objs {
		if pod, ok := o.(*corev1.Pod); ok && pod.DeletionTimestamp == nil &&
			pod.Labels[LabelState] == StateIdle && pod.Labels[LabelHash] == hash {
			n++
		}
	}
	return n
}

func (p *Pool) stopLeading() {
	p.mu.Lock()
	p.leadCtx = nil
	p.mu.Unlock()
	p.poke()
}

// Leading reports whether this replica currently replenishes and reaps.
func (p *Pool) Leading() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leadCtx != nil
}
