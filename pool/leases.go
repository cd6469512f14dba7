package pool

import (
	"context"
	"encoding/json"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Reading the other replicas' liveness Leases from the Lease informer.

// replicas is the live replicas as the Lease informer shows them: each
// one's run and wants, and the newest split a live leader published.
type replicas struct {
	// runs maps each live replica with a run to that run.
	runs map[string]string
	// wants maps each live replica with a run to its wants per profile.
	wants map[string]map[string]int
	// shares is the newest live leader's split; nil when none.
	shares *sharesRecord
}

// liveReplicas reads the Lease informer. A Lease without a run or with
// unreadable annotations belongs to a replica that takes no part in the
// split; it still counts as alive for reaping.
func (p *Pool) liveReplicas(now time.Time) replicas {
	out := replicas{runs: map[string]string{}, wants: map[string]map[string]int{}}
	for _, o := range p.leases.GetStore().List() {
		l, ok := o.(*coordv1.Lease)
		if !ok || leaseLapsed(l, now) {
			continue
		}
		replica, ok := replicaOfLease(l.Name)
		if !ok {
			continue
		}
		if run := l.Annotations[LeaseAnnRun]; run != "" {
			out.runs[replica] = run
			w := map[string]int{}
			_ = json.Unmarshal([]byte(l.Annotations[LeaseAnnWant]), &w)
			out.wants[replica] = w
		}
		if raw := l.Annotations[LeaseAnnShares]; raw != "" {
			var rec sharesRecord
			if json.Unmarshal([]byte(raw), &rec) == nil && (out.shares == nil || rec.Term > out.shares.Term) {
				out.shares = &rec
			}
		}
	}
	return out
}

// claimants are the live replicas taking part in a profile's split.
func (r replicas) claimants(profile string) []claimant {
	out := make([]claimant, 0, len(r.runs))
	for replica := range r.runs {
		out = append(out, claimant{replica: replica, want: r.wants[replica][profile]})
	}
	return out
}

// share is the published share of replica in profile; ok is false when no
// leader has published a split of the profile.
func (r replicas) share(profile, replica string) (int, bool) {
	if r.shares == nil {
		return 0, false
	}
	s, ok := r.shares.Profiles[profile]
	if !ok {
		return 0, false
	}
	return s.Shares[replica], true
}

// confirmExpired reads a replica's liveness Lease from the API server,
// not the cache, before its pods are deleted: after an outage the Lease
// informer may hold old copies for a while (its watch is re-listed with
// backoff), and a stale copy must not cost anyone their session. Any error
// means no: reaping can wait for the next pass.
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
