package pool

import (
	"context"
	"slices"
	"time"

	utilrand "k8s.io/apimachinery/pkg/util/rand"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgate/podgate/pool/profile"
)

// pendingTTL bounds how long a created pod that never showed up in the
// cache still counts towards the pool.
const pendingTTL = 30 * time.Second

// syncLoop runs a sync pass after every pod or profile change and every
// Resync (for backoff expiry, timeouts and shrinking), until ctx ends.
func (p *Pool) syncLoop(ctx context.Context) error {
	t := p.clock.NewTicker(p.opts.Resync)
	defer t.Stop()
	changed := p.profiles.Changed()
	for {
		p.sync(p.clock.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		case <-t.C():
		case <-changed:
			changed = p.profiles.Changed()
		}
	}
}

// view is one profile's pods as the cache shows them.
type view struct {
	idle, warming, claimed int
	// fresh are idle pods of the current template, Ready last, so that
	// shrinking removes warming pods first.
	fresh []*corev1.Pod
	// doomed are pods to delete, with the reason for the log.
	doomed []doomed
	// names holds every pod of the profile the cache showed, in any state.
	names map[string]bool
	// pendingBefore are the names this replica was creating, or had created
	// but not yet seen, just before the cache was read; see replenish.
	pendingBefore []string
}

type doomed struct {
	pod *corev1.Pod
	why string
}

// sync updates metrics and, on the leader, replenishes, shrinks and reaps.
func (p *Pool) sync(now time.Time) {
	p.mu.Lock()
	lctx := p.leadCtx
	p.mu.Unlock()
	for _, prof := range p.profiles.Valid() {
		// Snapshot the pods in flight before reading the cache: a pod
		// the cache shows after this point is still named here.
		p.mu.Lock()
		before := make([]string, 0, len(p.pending[prof.Name]))
		for name := range p.pending[prof.Name] {
			before = append(before, name)
		}
		p.mu.Unlock()
		v := p.view(prof, now)
		v.pendingBefore = before
		p.mu.Lock()
		h := p.healthLocked(prof)
		sz := p.sizerLocked(prof, now)
		sz.tick(now, p.opts.ShrinkAfter)
		target, degraded := sz.target, h.degraded()
		p.mu.Unlock()
		p.metrics.pods.WithLabelValues(prof.Name, "idle").Set(float64(v.idle))
		p.metrics.pods.WithLabelValues(prof.Name, "warming").Set(float64(v.warming))
		p.metrics.pods.WithLabelValues(prof.Name, "claimed").Set(float64(v.claimed))
		p.metrics.target.WithLabelValues(prof.Name).Set(float64(target))
		p.metrics.degraded.WithLabelValues(prof.Name).Set(boolFloat(degraded))
		if lctx != nil {
			p.replenish(lctx, prof, v, target, now)
		}
	}
	if lctx != nil {
		p.reap(lctx, now)
	}
	p.settleAbandoned(now)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// view classifies a profile's idle pods. Failure and timeout verdicts on
// idle pods are recorded in the profile's health by every replica alike.
func (p *Pool) view(prof *profile.Profile, now time.Time) view {
	v := view{names: map[string]bool{}}
	objs, _ := p.pods.GetIndexer().ByIndex(indexProfile, prof.Name)
	for _, o := range objs {
		pod, ok := o.(*corev1.Pod)
		if !ok {
			continue
		}
		v.names[pod.Name] = true
		if pod.DeletionTimestamp != nil {
			continue
		}
		switch pod.Labels[LabelState] {
		case StateClaimed:
			v.claimed++
			continue
		case StateIdle:
		default:
			continue
		}
		ready := podReady(pod)
		if ready {
			v.idle++
		} else {
			v.warming++
		}
		age := now.Sub(pod.CreationTimestamp.Time)
		switch f, bad := podFailure(pod); {
		case pod.Labels[LabelHash] != prof.Hash:
			v.doomed = append(v.doomed, doomed{pod, "template changed"})
		case bad:
			v.doomed = append(v.doomed, doomed{pod, f.Reason})
		case !ready && age > p.opts.ReadyTimeout:
			p.mu.Lock()
			p.recordFailureLocked(prof, pod, failTimeout, now)
			p.mu.Unlock()
			v.doomed = append(v.doomed, doomed{pod, ReasonReadinessTimeout})
		case p.opts.MaxIdleAge > 0 && age > p.opts.MaxIdleAge:
			v.doomed = append(v.doomed, doomed{pod, "idle too long"})
		default:
			v.fresh = append(v.fresh, pod)
		}
	}
	slices.SortStableFunc(v.fresh, func(a, b *corev1.Pod) int {
		ra, rb := podReady(a), podReady(b)
		switch {
		case ra == rb:
			return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
		case ra:
			return 1
		default:
			return -1
		}
	})
	return v
}

// replenish brings a profile's fresh idle pods to target: creating in
// parallel up to MaxConcurrentCreates, one probe at a time while the
// profile is unproven or degraded, nothing while backing off; and removing
// surplus idle pods once no creation is in flight.
func (p *Pool) replenish(ctx context.Context, prof *profile.Profile, v view, target int, now time.Time) {
	for _, d := range v.doomed {
		p.deleteAsLeader(ctx, d.pod, d.why)
	}
	p.mu.Lock()
	pending := p.pending[prof.Name]
	for name, at := range pending {
		if now.Sub(at) > pendingTTL {
			delete(pending, name)
		}
	}
	// In flight: every pod named pending before the cache was read that
	// the view does not show. A pod the informer delivered in between has
	// left pending but is still counted here, so no pod is counted
	// nowhere, which would make the leader create one too many. Only this
	// goroutine adds to pending, so nothing newer is missed.
	inflight := 0
	for _, name := range v.pendingBefore {
		if !v.names[name] {
			inflight++
		}
	}
	have := len(v.fresh) + inflight
	need := target - have
	h := p.healthLocked(prof)
	switch {
	case need > 0 && !h.mayCreate(now):
		need = 0
	case need > 0 && h.cautious():
		warming := inflight
		for _, pod := range v.fresh {
			if !podReady(pod) {
				warming++
			}
		}
		need = min(need, 1-min(warming, 1))
	}
	need = min(need, p.opts.MaxConcurrentCreates-p.creating[prof.Name], p.freeSlotsLocked(prof))
	// Pods are named here and entered in pending before they are
	// created, so that the next pass counts them from its snapshot.
	names := make([]string, 0, max(need, 0))
	for range max(need, 0) {
		p.creating[prof.Name]++
		name := "podgate-" + prof.Name + "-" + utilrand.String(5)
		if p.pending[prof.Name] == nil {
			p.pending[prof.Name] = map[string]time.Time{}
		}
		p.pending[prof.Name][name] = now
		names = append(names, name)
	}
	p.mu.Unlock()

	for _, name := range names {
		p.createIdle(ctx, prof, name)
	}
	if surplus := have - target; surplus > 0 && inflight == 0 {
		for _, pod := range v.fresh[:min(surplus, len(v.fresh))] {
			p.deleteAsLeader(ctx, pod, "pool above target")
		}
	}
}

// createIdle creates the idle pod name in the background. The caller has
// counted it in creating and entered it in pending.
func (p *Pool) createIdle(ctx context.Context, prof *profile.Profile, name string) {
	pod := p.newPod(prof, StateIdle, nil, p.clock.Now())
	pod.GenerateName, pod.Name = "", name
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		_, err := p.client.CoreV1().Pods(p.opts.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		p.mu.Lock()
		p.creating[prof.Name]--
		if err != nil {
			// Never created: no longer in flight. (A pod that was created
			// leaves pending when the informer shows it.)
			delete(p.pending[prof.Name], name)
		}
		p.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			p.log.Warn("creating idle pod", "profile", prof.Name, "err", p.createError(prof, err))
		}
		p.poke()
	}()
}

// reap deletes, as leader, pods nobody will release: claimed pods whose
// owner's liveness Lease is gone or expired (never this replica's own, and
// never younger than a Lease period, so a starting replica is not mistaken
// for a dead one), pods left released, and idle pods of removed profiles.
func (p *Pool) reap(ctx context.Context, now time.Time) {
	// gone caches, for this pass, each owner's Lease as read from the API
	// server; see confirmExpired.
	gone := map[string]bool{}
	for _, o := range p.pods.GetStore().List() {
		pod, ok := o.(*corev1.Pod)
		if !ok || pod.DeletionTimestamp != nil {
			continue
		}
		switch pod.Labels[LabelState] {
		case StateReleased:
			p.deleteAsLeader(ctx, pod, "released")
		case StateIdle:
			if _, ok := p.profiles.Get(pod.Labels[LabelProfile]); !ok {
				p.deleteAsLeader(ctx, pod, "profile removed")
			}
		case StateClaimed:
			owner := pod.Labels[LabelOwner]
			if owner == p.opts.ReplicaID {
				// Claimed under this id before this process began: an
				// earlier run of this replica held it and died, and
				// nobody else will reap it, since the id's Lease lives
				// on. The claim time is this replica's own clock.
				if at, ok := claimedAt(pod); ok && at.Before(p.started) {
					p.deleteAsLeader(ctx, pod, "claimed by an earlier run of this replica")
				}
				continue
			}
			since, ok := claimedAt(pod)
			if !ok {
				since = pod.CreationTimestamp.Time
			}
			if now.Sub(since) < p.opts.LivenessLeaseDuration {
				continue
			}
			// Right after an API outage, Leases look expired because
			// nobody could renew them; give their owners a Lease
			// period to renew before reaping their users' pods.
			if !p.api.upFor(now, p.opts.LivenessLeaseDuration) {
				continue
			}
			if !p.leaseExpired(owner, now) {
				continue
			}
			g, seen := gone[owner]
			if !seen {
				g = p.confirmExpired(ctx, owner, now)
				gone[owner] = g
			}
			if g {
				p.deleteAsLeader(ctx, pod, "owner "+owner+" is gone")
			}
		}
	}
}

// deleteAsLeader deletes a pod in the background, once per pod until it
// leaves the cache. An idle pod is deleted only if it is unchanged since
// the cache saw it (a resourceVersion precondition): a replica that
// claimed it in between keeps it, and the next pass decides again.
func (p *Pool) deleteAsLeader(ctx context.Context, pod *corev1.Pod, why string) {
	p.mu.Lock()
	if _, busy := p.deleting[pod.Name]; busy {
		p.mu.Unlock()
		return
	}
	p.deleting[pod.Name] = struct{}{}
	p.mu.Unlock()
	p.log.Info("deleting pod", "pod", pod.Name, "profile", pod.Labels[LabelProfile], "reason", why)
	name, uid, rv := pod.Name, pod.UID, ""
	if pod.Labels[LabelState] == StateIdle {
		rv = pod.ResourceVersion
	}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		err := p.deletePod(ctx, name, uid, rv)
		switch {
		case err == nil:
			return
		case apierrors.IsConflict(err):
			p.log.Info("not deleting pod: it changed since", "pod", name, "reason", why)
		default:
			p.log.Warn("deleting pod", "err", err)
		}
		p.mu.Lock()
		delete(p.deleting, name)
		p.mu.Unlock()
	}()
}

// ptrOrNil is &s, or nil for "".
func ptrOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
