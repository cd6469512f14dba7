package pool

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podgate/podgate/scheduler"
)

// Parked pods: scheduler.Parking, with the state on the pods themselves.
//
// A connection-mode pod whose user may come back is parked: state parked,
// its user's key (LabelUserKey, scheduler.UserKey) and the end of its window
// (AnnParkedUntil), and no owner or run, so that it outlives the replica
// that parked it and no owner-based reap takes it. Every replica's informer
// indexes claimed and parked pods by user key (indexUserKey), so a reconnect
// finds its pod, and a login counts its user's pods, without a scan.
//
// Isolation: a parked pod is reached only through its user key, which is the
// hash of the canonical user and the profile. Taking one back is a merge
// patch carrying the cached resourceVersion, as an unreserved claim is: of
// two logins (through any replicas) taking one parked pod, the API server
// lets exactly one win. The leader deletes a parked pod after its window
// with a resourceVersion precondition too, so a reconnect that won first
// keeps it. Both decide expiry with judgeParked, so a reconnect never takes a
// pod the leader may be deleting for its window (up to the clock skew
// between replicas).

// indexByUserKey indexes claimed and parked pods, not being deleted, by
// user key.
func indexByUserKey(o any) ([]string, error) {
	pod, ok := o.(*corev1.Pod)
	if !ok || pod.DeletionTimestamp != nil {
		return nil, nil
	}
	key, state := pod.Labels[LabelUserKey], pod.Labels[LabelState]
	if key == "" || (state != StateClaimed && state != StateParked) {
		return nil, nil
	}
	return []string{key}, nil
}

// parkVerdict is what a cached parked pod is good for.
type parkVerdict int

const (
	// parkKeep: within its window and Ready: a reconnect may take it.
	parkKeep parkVerdict = iota
	// parkExpired: its window has passed (or its end is unreadable).
	parkExpired
	// parkGone: not Ready, or being deleted: nobody can use it.
	parkGone
)

// judgeParked is the one verdict on a parked pod, for reconnects and the
// leader alike: a pure function of the pod and the time.
func judgeParked(pod *corev1.Pod, now time.Time) parkVerdict {
	until, err := time.Parse(time.RFC3339Nano, pod.Annotations[AnnParkedUntil])
	switch {
	case err != nil || !now.Before(until):
		return parkExpired
	case !podReady(pod):
		return parkGone
	}
	return parkKeep
}

// UserPods counts the pods under key this run does not hold; see
// scheduler.Parking. This run's claims are the scheduler's own count.
func (p *Pool) UserPods(key string) int {
	objs, _ := p.pods.GetIndexer().ByIndex(indexUserKey, key)
	n := 0
	for _, o := range objs {
		if pod, ok := o.(*corev1.Pod); ok && !p.deleting.has(pod.Name) && !p.heldByThisRun(pod) {
			n++
		}
	}
	return n
}

// heldByThisRun reports a pod this run has claimed.
func (p *Pool) heldByThisRun(pod *corev1.Pod) bool {
	return pod.Labels[LabelState] == StateClaimed && pod.Labels[LabelOwner] == p.opts.ReplicaID && pod.Labels[LabelRun] == p.run
}

// parkedOf lists the cached parked pods under key in the profile, newest
// window first.
func (p *Pool) parkedOf(key, profile string) []*corev1.Pod {
	objs, _ := p.pods.GetIndexer().ByIndex(indexUserKey, key)
	var out []*corev1.Pod
	for _, o := range objs {
		if pod, ok := o.(*corev1.Pod); ok && pod.Labels[LabelState] == StateParked && pod.Labels[LabelProfile] == profile {
			out = append(out, pod)
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int {
		return -compareStrings(a.Annotations[AnnParkedUntil], b.Annotations[AnnParkedUntil])
	})
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Park parks a pod this run holds; see scheduler.Parking.
func (p *Pool) Park(ctx context.Context, pod *scheduler.Pod, c scheduler.Claim, until time.Time, heldHere int) error {
	if pod.Stream != nil {
		_ = pod.Stream.Close()
		pod.Stream = nil
	}
	prof, err := p.validProfile(pod.Profile)
	if err != nil {
		return fmt.Errorf("parking pod %q: %w", pod.Ref.Name, err)
	}
	older := p.parkedOf(c.UserKey, prof.Name)
	// The older parked pods are deleted below: they do not count.
	others := p.UserPods(c.UserKey) - len(older) + heldHere
	if limit := prof.Policy.MaxPerUser; limit > 0 && others >= limit {
		p.metrics.reconnects.WithLabelValues(prof.Name, string(scheduler.ReconnectOverLimit)).Inc()
		return fmt.Errorf("parking pod %q: user %q holds %d other pods of profile %q: %w",
			pod.Ref.Name, c.Identity.User, others, prof.Name, scheduler.ErrParkOverLimit)
	}
	body, err := parkPatch(types.UID(pod.UID), p.opts.ReplicaID, p.run, c.UserKey, until)
	if err != nil {
		return err
	}
	seen := p.parkWaits.add(pod.Ref.Name)
	defer p.parkWaits.remove(pod.Ref.Name)
	if _, err := p.client.CoreV1().Pods(p.opts.Namespace).Patch(ctx, pod.Ref.Name, types.JSONPatchType, body, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("parking pod %q: %w", pod.Ref.Name, err)
	}
	// Wait (briefly) for this replica's cache to show the pod parked, so
	// that a reconnect through this replica right away finds it, and the
	// user's count never misses it. Other replicas see it after their
	// own watch delay, far shorter than any user's reconnect.
	wctx, cancel := context.WithTimeout(ctx, parkSeenTimeout)
	defer cancel()
	select {
	case <-seen:
	case <-wctx.Done():
		p.log.Info("parked pod not yet in this replica's cache", "pod", pod.Ref.Name)
	}
	for _, o := range older {
		if o.Name != pod.Ref.Name {
			p.deleteParked(context.Background(), o, reaped(fmt.Sprintf("user %q parked a newer pod in its place", c.Identity.User)), "")
		}
	}
	return nil
}

// parkSeenTimeout bounds Park's wait for its own cache.
const parkSeenTimeout = 2 * time.Second

// parkWaits lets Park wait for the informer to show the pods it parks. Its
// lock is a leaf.
type parkWaits struct {
	mu sync.Mutex // protects ch
	ch map[string]chan struct{}
}

func newParkWaits() *parkWaits { return &parkWaits{ch: map[string]chan struct{}{}} }

// add returns the channel closed once the pod is seen parked.
func (w *parkWaits) add(name string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan struct{})
	w.ch[name] = ch
	return ch
}

func (w *parkWaits) remove(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.ch, name)
}

// observe closes the channel of a pod the informer shows parked.
func (w *parkWaits) observe(pod *corev1.Pod) {
	if pod.Labels[LabelState] != StateParked {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.ch[pod.Name]; ok {
		close(ch)
		delete(w.ch, pod.Name)
	}
}

// parkPatch is the JSON patch that parks a pod: it fails unless the pod
// still has uid and is claimed by this run, and takes owner and run off (see
// letGoOps), so that no reap of a lapsed replica's pods touches it either.
func parkPatch(uid types.UID, owner, run, key string, until time.Time) ([]byte, error) {
	b, err := json.Marshal(append(letGoOps(uid, StateClaimed, StateParked, owner, run),
		jsonOp{Op: "add", Path: labelPath(LabelUserKey), Value: labelValue(key)},
		jsonOp{Op: "add", Path: "/metadata/annotations/" + escapePointer(AnnParkedUntil), Value: until.UTC().Format(time.RFC3339Nano)},
	))
	if err != nil {
		return nil, fmt.Errorf("encoding park patch: %w", err)
	}
	return b, nil
}

// Unpark takes back a pod parked for c.UserKey; see scheduler.Parking.
func (p *Pool) Unpark(ctx context.Context, profile string, c scheduler.Claim) (*scheduler.Pod, scheduler.ReconnectResult, error) {
	if err := p.waitReady(ctx); err != nil {
		return nil, scheduler.ReconnectNone, err
	}
	prof, err := p.validProfile(profile)
	if err != nil {
		return nil, scheduler.ReconnectNone, err
	}
	now := p.clock.Now()
	res := scheduler.ReconnectNone
	for _, cand := range p.parkedOf(c.UserKey, prof.Name) {
		switch judgeParked(cand, now) {
		case parkExpired:
			res = scheduler.ReconnectExpired
			continue
		case parkGone:
			res = scheduler.ReconnectDeleted
			continue
		}
		if !p.claiming.start(cand.Name) {
			continue
		}
		body, err := claimPatch(cand.ResourceVersion, p.opts.ReplicaID, p.run, c, now)
		if err == nil {
			body, err = withoutParkedUntil(body)
		}
		var got *corev1.Pod
		if err == nil {
			got, err = p.client.CoreV1().Pods(p.opts.Namespace).Patch(ctx, cand.Name, types.MergePatchType, body, metav1.PatchOptions{})
		}
		p.claiming.forget(cand.Name)
		switch {
		case err == nil && got.DeletionTimestamp == nil:
			p.metrics.reconnects.WithLabelValues(prof.Name, string(scheduler.ReconnectSamePod)).Inc()
			return claimedPod(prof, got, true), scheduler.ReconnectSamePod, nil
		case err == nil:
			res = scheduler.ReconnectDeleted
		case apierrors.IsNotFound(err):
			p.metrics.reconnects.WithLabelValues(prof.Name, string(scheduler.ReconnectDeleted)).Inc()
			res = scheduler.ReconnectDeleted
		case apierrors.IsConflict(err):
			// Another login of the same user took it (or the leader
			// is deleting it): the next candidate, if any.
		default:
			return nil, res, fmt.Errorf("taking parked pod %q: %w: %w", cand.Name, err, apiFailure(err))
		}
	}
	return nil, res, nil
}

// withoutParkedUntil adds to a claim's merge patch the removal of the
// parked-until annotation.
func withoutParkedUntil(body []byte) ([]byte, error) {
	var patch map[string]map[string]any
	if err := json.Unmarshal(body, &patch); err != nil {
		return nil, fmt.Errorf("decoding claim patch: %w", err)
	}
	ann, _ := patch["metadata"]["annotations"].(map[string]any)
	ann[AnnParkedUntil] = nil
	b, err := json.Marshal(patch)
	if err != nil {
		return nil, fmt.Errorf("encoding unpark patch: %w", err)
	}
	return b, nil
}

// reapParked deletes, as leader, the parked pods whose window has passed
// and those no longer Ready.
func (p *Pool) reapParked(ctx context.Context, now time.Time) {
	objs, _ := p.pods.GetIndexer().ByIndex(indexState, StateParked)
	for _, o := range objs {
		pod, ok := o.(*corev1.Pod)
		if !ok || pod.DeletionTimestamp != nil {
			continue
		}
		switch judgeParked(pod, now) {
		case parkExpired:
			p.deleteParked(ctx, pod, reaped("its user did not reconnect before "+pod.Annotations[AnnParkedUntil]), scheduler.ReconnectExpired)
		case parkGone:
			p.deleteParked(ctx, pod, reaped("it stopped being Ready while parked for its user's reconnect"), scheduler.ReconnectDeleted)
		}
	}
}

// deleteParked deletes a parked pod in the background, once per pod until
// it leaves the cache, unless it changed since the cache saw it (a
// reconnect took it); on success it counts result, when set.
func (p *Pool) deleteParked(ctx context.Context, pod *corev1.Pod, why removal, result scheduler.ReconnectResult) {
	if !p.deleting.start(pod.Name) {
		return
	}
	p.log.Info("deleting parked pod", "pod", pod.Name, "profile", pod.Labels[LabelProfile], "reason", why.note)
	name, uid, rv, prof := pod.Name, pod.UID, pod.ResourceVersion, pod.Labels[LabelProfile]
	p.background(func() {
		ctx, cancel := context.WithTimeout(ctx, recordTimeout)
		defer cancel()
		err := p.deletePod(ctx, name, uid, rv)
		switch {
		case err == nil:
			if result != scheduler.ReconnectNone {
				p.metrics.reconnects.WithLabelValues(prof, string(result)).Inc()
			}
			p.removed(name, uid, why)
			return
		case apierrors.IsConflict(err):
			p.log.Info("not deleting parked pod: it changed since (taken back?)", "pod", name)
		default:
			p.log.Warn("deleting parked pod", "pod", name, "err", err)
		}
		p.deleting.forget(name)
	})
}
