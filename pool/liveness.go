package pool

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"sync"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Liveness. Every replica renews a Lease of its own every LivenessRenew; the
// leader deletes the reserved and claimed pods of a replica whose Lease
// lapsed (reap.go). The renewal also publishes what the replica wants
// reserved (LeaseAnnWant) and its run (LeaseAnnRun), and, on the leader,
// the split it decided (LeaseAnnShares): data that other replicas need and
// that costs no extra write, because the Lease is renewed anyway.
//
// Isolation invariant, part 2: a replica that cannot renew (partitioned,
// paused, overloaded) stops handing out reserved pods before the leader may
// treat it as gone. It may hand them out only until validUntil: the moment
// its last successful renewal was sent, plus the Lease duration, minus
// ValidityMargin, read on this process's monotonic clock. Isolation does not
// rest on it: should clocks disagree, the claim record's test operations
// (record.go) fail on a pod the leader deleted and the session ends; this
// only keeps that rare.

// minRenewGap is the shortest time between two renewals: an early renewal
// (shares or wants that changed) waits this long after the last one.
const minRenewGap = time.Second

// sharesRecord is what a leader publishes: per profile, the split it
// decided. Term is the leader Lease's transition count when this leader
// took over, so that should two live Leases carry a record (an old leader
// that has not yet noticed it lost), replicas follow the newer leader.
type sharesRecord struct {
	Term     int              `json:"term"`
	Profiles map[string]split `json:"profiles"`
}

// liveness is this replica's Lease and what it publishes. Its lock is a
// leaf.
type liveness struct {
	// mu protects the fields below.
	mu sync.Mutex
	// lease is the object last written, for the next renewal.
	lease *coordv1.Lease
	// validUntil is when hand-outs of reserved pods stop; zero until the
	// first renewal.
	validUntil time.Time
	// lastSent is when the last renewal was sent.
	lastSent time.Time
	// wants are the wants last published, per profile.
	wants map[string]int
	// offer is the split this replica, leading, wants published; nil
	// when it does not lead. published is what its last successful
	// renewal carried.
	offer, published *sharesRecord
	// early asks keepLiveness for an early renewal; capacity 1.
	early chan struct{}
}

func newLiveness() *liveness { return &liveness{early: make(chan struct{}, 1)} }

// mayHandOut reports whether this replica may hand out reserved pods now.
func (l *liveness) mayHandOut(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return now.Before(l.validUntil)
}

// renewSoon asks for an early renewal.
func (l *liveness) renewSoon() {
	select {
	case l.early <- struct{}{}:
	default:
	}
}

// offerShares sets the split the leader wants published (nil when it stops
// leading) and asks for an early renewal when it differs from what was
// published.
func (l *liveness) offerShares(rec *sharesRecord) {
	l.mu.Lock()
	changed := !sameShares(rec, l.published)
	l.offer = rec
	l.mu.Unlock()
	if changed {
		l.renewSoon()
	}
}

// publishedShares is the split this replica's last renewal carried (nil
// when none): what the leader acts on.
func (l *liveness) publishedShares() *sharesRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.published
}

// wantRose asks for an early renewal when a profile's want has at least
// doubled, and grown by 4 or more, since it was published: a burst should
// reach the leader before the next regular renewal.
func (l *liveness) wantRose(profile string, want int) {
	l.mu.Lock()
	old := l.wants[profile]
	l.mu.Unlock()
	if want >= 2*old && want >= old+4 {
		l.renewSoon()
	}
}

func sameShares(a, b *sharesRecord) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Term != b.Term || len(a.Profiles) != len(b.Profiles) {
		return false
	}
	for name, sa := range a.Profiles {
		sb, ok := b.Profiles[name]
		if !ok || sa.Unreserved != sb.Unreserved || !maps.Equal(sa.Shares, sb.Shares) {
			return false
		}
	}
	return true
}

// renewLiveness writes this replica's liveness Lease, creating it when
// needed, with the current wants and, when leading, the offered split.
func (p *Pool) renewLiveness(ctx context.Context) error {
	now := p.clock.Now()
	wants := map[string]int{}
	for _, prof := range p.profiles.Valid() {
		wants[prof.Name] = p.demand.want(prof, now)
	}
	wantJSON, err := json.Marshal(wants)
	if err != nil {
		return fmt.Errorf("encoding wants: %w", err)
	}
	p.live.mu.Lock()
	prev, offer := p.live.lease, p.live.offer
	p.live.lastSent = now
	p.live.mu.Unlock()
	ann := map[string]string{LeaseAnnRun: p.run, LeaseAnnWant: string(wantJSON)}
	if offer != nil {
		b, err := json.Marshal(offer)
		if err != nil {
			return fmt.Errorf("encoding shares: %w", err)
		}
		ann[LeaseAnnShares] = string(b)
	}
	got, err := p.writeLease(ctx, prev, now, ann)
	if err != nil {
		return err
	}
	p.live.mu.Lock()
	defer p.live.mu.Unlock()
	p.live.lease = got
	p.live.validUntil = now.Add(p.opts.LivenessLeaseDuration - p.opts.ValidityMargin)
	p.live.wants = wants
	p.live.published = offer
	return nil
}

// writeLease updates prev (or, when that fails or there is none, the
// current Lease, or a new one) with renewTime now and the annotations ann,
// which replace podgate's own.
func (p *Pool) writeLease(ctx context.Context, prev *coordv1.Lease, now time.Time, ann map[string]string) (*coordv1.Lease, error) {
	leases := p.client.CoordinationV1().Leases(p.opts.Namespace)
	name := livenessLeaseName(p.opts.ReplicaID)
	renew := metav1.NewMicroTime(now)
	secs := int32(max(1, math.Ceil(p.opts.LivenessLeaseDuration.Seconds())))
	fill := func(l *coordv1.Lease) {
		if l.Labels == nil {
			l.Labels = map[string]string{}
		}
		l.Labels[LabelReplica] = "true"
		if l.Annotations == nil {
			l.Annotations = map[string]string{}
		}
		delete(l.Annotations, LeaseAnnShares)
		maps.Copy(l.Annotations, ann)
		l.Spec.HolderIdentity = ptr.To(p.opts.ReplicaID)
		l.Spec.LeaseDurationSeconds = &secs
		l.Spec.RenewTime = &renew
	}
	if prev != nil {
		l := prev.DeepCopy()
		fill(l)
		got, err := leases.Update(ctx, l, metav1.UpdateOptions{})
		if err == nil {
			return got, nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("renewing lease %q: %w", name, err)
		}
	}
	cur, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l := &coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.opts.Namespace}}
		fill(l)
		l.Spec.AcquireTime = &renew
		got, err := leases.Create(ctx, l, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("creating lease %q: %w", name, err)
		}
		return got, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading lease %q: %w", name, err)
	}
	l := cur.DeepCopy()
	fill(l)
	got, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("renewing lease %q: %w", name, err)
	}
	return got, nil
}

// keepLiveness renews the liveness Lease every LivenessRenew, and early
// (but at most every minRenewGap) when asked, until ctx ends. It does not
// delete the Lease on the way out: a replica that stops uncleanly and one
// that stops cleanly look the same, and the leader reaps only after expiry.
func (p *Pool) keepLiveness(ctx context.Context) error {
	t := p.clock.NewTicker(p.opts.LivenessRenew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		case <-p.live.early:
			p.live.mu.Lock()
			wait := minRenewGap - p.clock.Since(p.live.lastSent)
			p.live.mu.Unlock()
			if wait > 0 {
				gap := p.clock.NewTimer(wait)
				select {
				case <-ctx.Done():
					gap.Stop()
					return nil
				case <-gap.C():
				}
			}
		}
		// Each renewal gets one renewal period: a request stuck on an API
		// server that is coming back must not hold up the next renewal
		// while the Lease runs out.
		rctx, cancel := context.WithTimeout(ctx, p.opts.LivenessRenew)
		err := p.renewLiveness(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.log.Warn("renewing liveness lease", "err", err)
		}
	}
}
