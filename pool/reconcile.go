package pool

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"

	"github.com/podgate/podgate/pool/profile"
)

// syncLoop runs a sync pass after every pod or profile change (passes
// coalesce: at most one waits) and every Resync, until ctx ends.
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
	// unreserved are the fresh idle pods of the current template, Ready
	// last, so that shrinking removes warming pods first; each by creation.
	unreserved idlePods
	// reserved counts, per live owner, the fresh pods reserved for its
	// current run, Ready or not.
	reserved map[string]int
	// lapsed counts the reserved pods of an owner the cache shows without
	// a live Lease, or of an earlier run, not yet deleted: nobody may hand
	// them out, but they count towards the target until they are gone, so
	// that a Lease renewed late (an overloaded API server) does not have
	// the leader create their replacements next to them. The owner's new
	// run (events.go) or the leader's reap (reap.go) deletes them.
	lapsed int
	// For the metrics: Ready spare pods, unreserved and reserved; spare
	// pods not Ready yet; claimed pods.
	readyIdle, readyReserved, warming, claimed, parked int
	// starting counts the fresh spare pods (reserved or not) not Ready
	// yet: the probes of a profile that has not proven it can start pods.
	starting int
	// doomed are unreserved pods the leader deletes; own are this run's
	// reserved pods this replica deletes; each with the reason.
	doomed, own []doomed
	// shown says, of the pods being created, which the index shows;
	// idle, of the pods being relabelled, which are unreserved kept pods.
	shown, idle map[string]bool
}

type doomed struct {
	pod *corev1.Pod
	why removal
}

// sync updates metrics, gives back this replica's surplus reserved pods,
// and, on the leader, splits, replenishes, relabels, shrinks and reaps.
func (p *Pool) sync(now time.Time) {
	lctx, term := p.lead.current()
	reps := p.liveReplicas(now)
	var offer *sharesRecord
	if lctx != nil {
		offer = &sharesRecord{Term: term, Profiles: map[string]split{}}
	}
	published := p.live.publishedShares()
	held := p.reserved.counts()
	for _, prof := range p.profiles.Valid() {
		// The pods in flight are read before the pod index, so that a
		// pod the index shows after this point is still named here (the
		// handlers update the index before they clear the in-flight mark).
		creating, calls := p.creating.inFlight(prof.Name, now)
		relabeling, _ := p.relabeling.inFlight(prof.Name, now)
		v := p.view(prof, reps, inFlight{creating, calls, relabeling}, now)
		pl := p.demand.tick(prof, now)
		p.metrics.observeView(prof.Name, v, pl, held[prof.Name])
		for _, d := range v.own {
			if rp := p.reserved.takeOut(d.pod.Name); rp != nil {
				rp.closeStream()
				p.deleteOwn(d.pod, d.why)
			}
		}
		if share, ok := reps.share(prof.Name, p.opts.ReplicaID); ok {
			p.metrics.share.WithLabelValues(prof.Name).Set(float64(share))
			p.giveBack(p.reserved.surplus(prof.Name, share, p.opts.LivenessRenew, now))
		}
		if lctx == nil {
			continue
		}
		offer.Profiles[prof.Name] = splitTarget(pl.target, reps.claimants(prof.Name), p.opts.MaxReserved)
		var sp *split
		if published != nil && published.Term == term {
			if s, ok := published.Profiles[prof.Name]; ok {
				sp = &s
			}
		}
		p.replenish(lctx, prof, v, pl, sp, reps.runs, inFlight{creating, calls, relabeling}, now)
	}
	if lctx != nil {
		p.live.offerShares(offer)
		p.reap(lctx, reps, now)
	}
	p.settleAbandoned(now)
	role := "follower"
	if lctx != nil {
		role = "leader"
	}
	p.metrics.syncPass.WithLabelValues(role).Observe(p.clock.Since(now).Seconds())
}

// view classifies a profile's pods from the index (podindex.go), at a
// cost independent of the pool's size in the common case. Failure and
// timeout verdicts on spare pods are recorded in the profile's health by
// every replica alike. fl names the pods in flight the pass asks about.
func (p *Pool) view(prof *profile.Profile, reps replicas, fl inFlight, now time.Time) view {
	iv := p.index.read(prof.Name, prof.Hash, reps.runs, ownerRun{true, p.opts.ReplicaID, p.run}, now, fl.creating, fl.relabeling)
	v := view{
		unreserved: iv.unreserved, reserved: iv.reserved, lapsed: iv.lapsed,
		readyIdle: iv.readyIdle, readyReserved: iv.readyReserved, warming: iv.warming,
		claimed: iv.claimed, parked: iv.parked, starting: iv.starting,
		shown: iv.shown, idle: iv.idle,
	}
	for _, d := range iv.doomed {
		why := p.doomedBecause(prof, d.pod, d.ready, now)
		switch d.to {
		case doomedIdle:
			v.doomed = append(v.doomed, doomed{d.pod, why})
		case doomedOwn:
			v.own = append(v.own, doomed{d.pod, why})
		}
	}
	return v
}

// doomedBecause says why a spare pod must be replaced, or returns the zero
// removal.
func (p *Pool) doomedBecause(prof *profile.Profile, pod *corev1.Pod, ready bool, now time.Time) removal {
	age := now.Sub(pod.CreationTimestamp.Time)
	switch f, bad := podFailure(pod); {
	case pod.Labels[LabelHash] != prof.Hash:
		return reaped(fmt.Sprintf("profile %q has a new template", prof.Name))
	case bad:
		return cannotStart(prof.Name, f, pod)
	case !ready && age > p.opts.ReadyTimeout:
		p.demand.recordFailure(prof, pod, failTimeout, now)
		return cannotStart(prof.Name, failTimeout, pod)
	case p.opts.MaxIdleAge > 0 && age > p.opts.MaxIdleAge:
		return reaped(fmt.Sprintf("idle for longer than %s (PODGATE_POOL_MAX_IDLE_AGE)", p.opts.MaxIdleAge))
	}
	return removal{}
}

// inFlight is what the leader asked for and its cache does not show yet.
type inFlight struct {
	creating map[string]expectation
	calls    int
	// relabeling are idle pods being reserved.
	relabeling map[string]expectation
}

// replenish brings a profile's spare pods to the target, as leader:
// creating in parallel up to MaxConcurrentCreates (one probe at a time
// while the profile is unproven or degraded, nothing while backing off),
// each new pod reserved for the replica furthest short of its published
// share, or idle; relabelling unreserved pods beyond the published
// remainder for replicas still short; and deleting surplus unreserved pods
// once nothing is in flight. sp is the published split (nil until one is
// published in this term): the leader acts only on what the owners can
// read.
func (p *Pool) replenish(ctx context.Context, prof *profile.Profile, v view, pl plan, sp *split, runs map[string]string, fl inFlight, now time.Time) {
	for _, d := range v.doomed {
		p.deleteAsLeader(ctx, d.pod, d.why)
	}
	// held counts, per owner ("" for idle pods), what the cache shows plus
	// what is in flight and not shown: a pod the informer delivered after
	// the in-flight snapshot is counted once, never nowhere.
	held := map[string]int{"": v.unreserved.Len()}
	for owner, n := range v.reserved {
		held[owner] += n
	}
	pending := 0
	for name, e := range fl.creating {
		if !v.shown[name] {
			pending++
			held[e.owner]++
		}
	}
	for name, e := range fl.relabeling {
		if v.idle[name] { // once the cache shows it reserved, the view counts it
			held[e.owner]++
			held[""]--
		}
	}
	have := pending + v.unreserved.Len() + v.lapsed
	for _, n := range v.reserved {
		have += n
	}
	shares := map[string]int{}
	if sp != nil {
		shares = sp.Shares
	}
	need := pl.target - have
	switch {
	case need > 0 && (!pl.mayCreate || pl.held):
		need = 0
	case need > 0 && pl.cautious:
		need = min(need, 1-min(pending+v.starting, 1))
	}
	starting, _ := p.pods.GetIndexer().ByIndex(indexStarting, prof.Name)
	need = min(need, p.opts.MaxConcurrentCreates-fl.calls, p.opts.MaxStarting-len(starting)-pending-p.queue.unseen(prof.Name))
	for range max(need, 0) {
		owner := largestDeficit(shares, held)
		held[owner]++
		p.createSpare(ctx, prof, owner, runs[owner], now)
	}
	if sp != nil {
		p.relabelForShares(ctx, prof, v, shares, held, sp.Unreserved, runs, now)
	}
	// Surplus is deleted from the unreserved pods beyond the remainder:
	// reserved surplus is given back by its owners first (reserved.go),
	// then deleted here.
	if surplus := have - pl.target; surplus > 0 && pending == 0 && len(fl.relabeling) == 0 {
		keep := 0
		if sp != nil {
			keep = min(sp.Unreserved, pl.target)
		}
		for _, pod := range v.unreserved.first(max(0, min(surplus, v.unreserved.Len()-keep))) {
			p.deleteAsLeader(ctx, pod, reaped(fmt.Sprintf("profile %q has more spare pods than its target of %d", prof.Name, pl.target)))
		}
	}
}

// relabelForShares reserves unreserved pods beyond the remainder for the
// replicas short of their shares, Ready pods first.
func (p *Pool) relabelForShares(ctx context.Context, prof *profile.Profile, v view, shares, held map[string]int, remainder int, runs map[string]string, now time.Time) {
	v.unreserved.descend(func(pod *corev1.Pod) bool {
		if held[""] <= remainder {
			return false
		}
		if p.claiming.has(pod.Name) || p.relabeling.has(pod.Name) {
			return true
		}
		owner := largestDeficit(shares, held)
		if owner == "" {
			return false
		}
		held[owner]++
		held[""]--
		p.relabel(ctx, prof, pod, owner, runs[owner], now)
		return true
	})
}

// createSpare creates one spare pod in the background: reserved for owner's
// run, or idle when owner is "".
func (p *Pool) createSpare(ctx context.Context, prof *profile.Profile, owner, run string, now time.Time) {
	state := StateIdle
	if owner != "" {
		state = StateReserved
	}
	pod := p.newPod(prof, state, owner, run, nil, now)
	pod.GenerateName, pod.Name = "", "podgate-"+prof.Name+"-"+utilrand.String(5)
	p.creating.begin(pod.Name, expectation{profile: prof.Name, owner: owner, at: now})
	p.background(func() {
		_, err := p.client.CoreV1().Pods(p.opts.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		p.creating.finished(pod.Name, prof.Name, err == nil)
		if err != nil && ctx.Err() == nil {
			p.log.Warn("creating spare pod", "profile", prof.Name, "err", p.createError(prof, err))
		}
		p.poke()
	})
}

// relabel reserves an idle pod for owner's run in the background.
func (p *Pool) relabel(ctx context.Context, prof *profile.Profile, pod *corev1.Pod, owner, run string, now time.Time) {
	p.relabeling.begin(pod.Name, expectation{profile: prof.Name, owner: owner, at: now})
	name, uid := pod.Name, pod.UID
	p.background(func() {
		body, err := relabelPatch(uid, owner, run)
		if err == nil {
			_, err = p.client.CoreV1().Pods(p.opts.Namespace).Patch(ctx, name, types.JSONPatchType, body, metav1.PatchOptions{})
		}
		p.relabeling.finished(name, prof.Name, err == nil)
		if err != nil && ctx.Err() == nil {
			p.log.Debug("reserving an idle pod failed; the next pass decides again", "pod", name, "owner", owner, "err", err)
		}
		p.poke()
	})
}
