package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/scheduler"
)

// Policy returns a profile's scheduling policy; see scheduler.Pools.
func (p *Pool) Policy(name string) (scheduler.Policy, error) {
	prof, err := p.validProfile(name)
	if err != nil {
		return scheduler.Policy{}, err
	}
	return prof.Policy, nil
}

// validProfile resolves a profile name to a usable profile.
func (p *Pool) validProfile(name string) (*profile.Profile, error) {
	e, ok := p.profiles.Get(name)
	if !ok {
		return nil, fmt.Errorf("profile %q: %w", name, scheduler.ErrUnknownProfile)
	}
	if e.Profile == nil {
		return nil, &scheduler.Refusal{
			Err:    fmt.Errorf("profile %q: %w: %w", e.Name, e.Err, scheduler.ErrProfileDegraded),
			Reason: "this environment is misconfigured, please tell the operator",
		}
	}
	return e.Profile, nil
}

// refusal turns a pod failure into the error an SSH user sees.
func refusal(prof string, f failure) error {
	return &scheduler.Refusal{
		Err:    fmt.Errorf("profile %q: %w: %w", prof, f.Err, scheduler.ErrProfileDegraded),
		Reason: f.UserText,
	}
}

// Claim hands out an idle Ready pod of the profile's current template. Each
// attempt is one merge PATCH carrying the cached resourceVersion, so of two
// replicas claiming one pod the API server lets exactly one win (the other
// gets 409 Conflict and tries its next candidate).
func (p *Pool) Claim(ctx context.Context, name string, c scheduler.Claim) (*scheduler.Pod, error) {
	if err := p.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := p.apiUnavailable(name); err != nil {
		return nil, err
	}
	prof, err := p.validProfile(name)
	if err != nil {
		return nil, err
	}
	pod, err := p.claimIdle(ctx, prof, p.candidates(prof), c, "hit")
	if errors.Is(err, scheduler.ErrNoIdlePod) {
		p.metrics.claims.WithLabelValues(prof.Name, "miss").Inc()
	}
	return pod, err
}

// claimIdle tries cands, the profile's idle Ready pods, in turn until one claim
// wins, counting a win under result ("hit", or "handoff" for a user
// already waiting for a cold pod). It fails with ErrNoIdlePod when every
// candidate is gone or taken, and counts nothing then.
func (p *Pool) claimIdle(ctx context.Context, prof *profile.Profile, cands []*corev1.Pod, c scheduler.Claim, result string) (*scheduler.Pod, error) {
	for _, cand := range cands {
		if !p.reserve(cand.Name) {
			continue
		}
		body, err := claimPatch(cand.ResourceVersion, StateClaimed, p.opts.ReplicaID, c, p.clock.Now())
		if err != nil {
			p.unreserve(cand.Name)
			return nil, err
		}
		// The call gives up at once should the API server be found
		// unavailable while it is in flight.
		pctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(p.api.downCtx(), cancel)
		got, err := p.client.CoreV1().Pods(p.opts.Namespace).Patch(pctx, cand.Name, types.MergePatchType, body, metav1.PatchOptions{})
		stop()
		cancel()
		switch {
		case err == nil:
			p.metrics.claims.WithLabelValues(prof.Name, result).Inc()
			return p.claimed(prof, got, result == "hit"), nil
		case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
			// Someone else won this pod (or it changed or vanished);
			// the informer will catch up, try the next one.
			p.metrics.claims.WithLabelValues(prof.Name, "conflict").Inc()
			p.unreserve(cand.Name)
		default:
			p.metrics.claims.WithLabelValues(prof.Name, "error").Inc()
			p.unreserve(cand.Name)
			p.abandon(cand, labelValue(c.Session))
			return nil, fmt.Errorf("claiming pod %q: %w: %w", cand.Name, err, apiFailure(err))
		}
	}
	return nil, fmt.Errorf("profile %q: %w", prof.Name, scheduler.ErrNoIdlePod)
}

// candidates lists the profile's idle Ready pods of the current template:
// those with open prepared streams first (not those still opening them),
// each group shuffled so that replicas claiming at once rarely pick the
// same pod.
func (p *Pool) candidates(prof *profile.Profile) []*corev1.Pod {
	objs, _ := p.pods.GetIndexer().ByIndex(indexIdleReady, prof.Name)
	var withStreams, without []*corev1.Pod
	p.mu.Lock()
	for _, o := range objs {
		pod, ok := o.(*corev1.Pod)
		if !ok || pod.Labels[LabelHash] != prof.Hash {
			continue
		}
		if _, t := p.taken[pod.Name]; t {
			continue
		}
		if _, d := p.deleting[pod.Name]; d {
			continue // this replica, leading, is deleting it
		}
		if p.prepared[pod.Name].open() {
			withStreams = append(withStreams, pod)
		} else {
			without = append(without, pod)
		}
	}
	p.mu.Unlock()
	rand.Shuffle(len(withStreams), func(i, j int) { withStreams[i], withStreams[j] = withStreams[j], withStreams[i] })
	rand.Shuffle(len(without), func(i, j int) { without[i], without[j] = without[j], without[i] })
	return append(withStreams, without...)
}

// reserve marks a pod as being claimed by this replica; false when another
// local claimer already has it.
func (p *Pool) reserve(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, t := p.taken[name]; t {
		return false
	}
	p.taken[name] = claimReserved
	return true
}

// claimProgress is how far a claim by this replica has got, as far as the
// pod's taken entry is concerned.
type claimProgress uint8

const (
	// claimReserved: the claim PATCH is in flight and the watch has not
	// yet shown the pod claimed.
	claimReserved claimProgress = iota
	// claimSeen: the watch showed this replica's claim before the PATCH
	// returned; the pod keeps its streams for claimed.
	claimSeen
	// claimWon: the PATCH returned and the watch has not yet shown the
	// claim; the pod stays out of the candidates until it does.
	claimWon
)

func (p *Pool) unreserve(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.taken, name)
}

// claimed builds the scheduler's view of a pod this replica now holds,
// handing over the pod's prepared streams.
func (p *Pool) claimed(prof *profile.Profile, pod *corev1.Pod, warm bool) *scheduler.Pod {
	out := &scheduler.Pod{
		Ref:     scheduler.PodRef{Namespace: pod.Namespace, Name: pod.Name, Container: prof.Container()},
		UID:     string(pod.UID),
		Profile: prof.Name,
		Warm:    warm,
	}
	p.mu.Lock()
	s := p.prepared[pod.Name]
	delete(p.prepared, pod.Name)
	// The pod stays taken until the cache shows it claimed, so that no
	// local claimer tries it meanwhile; if the watch already has, the
	// entry has done its job. A cold pod, created claimed, has none.
	switch pr, ok := p.taken[pod.Name]; {
	case ok && pr == claimSeen:
		delete(p.taken, pod.Name)
	case ok:
		p.taken[pod.Name] = claimWon
	}
	p.mu.Unlock()
	if s != nil {
		if s.uid == out.UID {
			out.TTY, out.Plain = s.tty, s.plain
		} else {
			s.close()
		}
	}
	return out
}

// claimPatch is the merge patch that claims (or releases) a pod. With rv
// set, the API server rejects it with 409 unless the pod is unchanged since
// the cache saw it.
func claimPatch(rv, state, owner string, c scheduler.Claim, now time.Time) ([]byte, error) {
	meta := map[string]any{
		"labels": map[string]string{
			LabelState:   state,
			LabelOwner:   owner,
			LabelSession: labelValue(c.Session),
		},
		"annotations": map[string]string{
			AnnUser:       c.Identity.User,
			AnnRemoteAddr: c.Identity.RemoteAddr,
			AnnConnID:     c.Identity.ConnID,
			AnnClaimedAt:  now.UTC().Format(time.RFC3339Nano),
		},
	}
	if rv != "" {
		meta["resourceVersion"] = rv
	}
	b, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return nil, fmt.Errorf("encoding claim patch: %w", err)
	}
	return b, nil
}

// newPod renders a profile's template into a pod in the given state; c is
// set for pods created claimed.
func (p *Pool) newPod(prof *profile.Profile, state string, c *scheduler.Claim, now time.Time) *corev1.Pod {
	t := prof.Template.DeepCopy()
	pod := &corev1.Pod{ObjectMeta: t.ObjectMeta, Spec: t.Spec}
	pod.Name = ""
	pod.GenerateName = "podgate-" + prof.Name + "-"
	pod.Namespace = p.opts.Namespace
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Labels[LabelManaged] = "true"
	pod.Labels[LabelProfile] = prof.Name
	pod.Labels[LabelState] = state
	pod.Labels[LabelHash] = prof.Hash
	if c != nil {
		pod.Labels[LabelOwner] = p.opts.ReplicaID
		pod.Labels[LabelSession] = labelValue(c.Session)
		pod.Annotations[AnnUser] = c.Identity.User
		pod.Annotations[AnnRemoteAddr] = c.Identity.RemoteAddr
		pod.Annotations[AnnConnID] = c.Identity.ConnID
		pod.Annotations[AnnClaimedAt] = now.UTC().Format(time.RFC3339Nano)
		pod.Annotations[AnnCold] = "true"
	}
	return pod
}

// Create makes a pod claimed from birth and waits for it through the
// informer; see scheduler.Pools. Should an idle pod of the profile turn
// Ready first, the waiter takes that one instead and its own pod joins the
// pool (see handoff). While MaxStarting pods of the profile are starting,
// the waiter queues without a pod of its own until a slot frees or a pod
// turns Ready for it (see starting.go).
func (p *Pool) Create(ctx context.Context, name string, c scheduler.Claim, progress func(scheduler.WaitState)) (*scheduler.Pod, error) {
	if err := p.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := p.apiUnavailable(name); err != nil {
		return nil, err
	}
	prof, err := p.validProfile(name)
	if err != nil {
		return nil, err
	}
	now := p.clock.Now()
	p.mu.Lock()
	h := p.healthLocked(prof)
	// Fail fast while the profile is known broken and backing off: a
	// user should not wait minutes for a pod that cannot start.
	if h.degraded() && !h.mayCreate(now) {
		f := h.last
		p.mu.Unlock()
		return nil, refusal(prof.Name, f)
	}
	// The waiter queues at once, so that its place is kept whether it
	// creates a pod now or waits for a start slot.
	w := &coldWait{pool: p, prof: prof, key: p.podlessKeyLocked(), ch: make(chan struct{}, 1)}
	p.coldQueue[prof.Name] = append(p.coldQueue[prof.Name], w.key)
	p.mu.Unlock()
	defer w.done()

	timer := p.clock.NewTimer(prof.MaxWait)
	defer timer.Stop()
	lastPhase := ""
	for {
		// Taken before the cache is read, so that a pod that turns
		// Ready (or a slot that frees) after the read still wakes this
		// loop.
		idle := p.idleReadySignal(prof.Name)
		if w.created != nil {
			cur, ok := p.cachedPod(w.created.Name)
			switch {
			case ok && cur.UID == w.created.UID:
				w.seen()
				if podReady(cur) {
					w.ready = true
					p.metrics.podStart.WithLabelValues(prof.Name).Observe(p.clock.Since(w.at).Seconds())
					return p.claimed(prof, cur, false), nil
				}
				if f, bad := podFailure(cur); bad {
					p.mu.Lock()
					p.recordFailureLocked(prof, cur, f, p.clock.Now())
					p.mu.Unlock()
					return nil, refusal(prof.Name, f)
				}
				if ph := waitPhase(cur); ph != lastPhase && progress != nil {
					lastPhase = ph
					progress(scheduler.WaitState{Phase: ph})
				}
			case w.wasSeen:
				return nil, fmt.Errorf("waiting for pod %q: %w", w.created.Name, scheduler.ErrPodGone)
			}
		}
		if pod, ok := p.handoff(ctx, prof, c, w.key, w.created, w.at); ok {
			w.ready = true // the cold pod, if any, joined the pool instead
			return pod, nil
		}
		// Only a waiter no Ready pod is free for takes a start slot.
		if w.created == nil {
			if err := w.createIfSlot(ctx, c); err != nil {
				return nil, err
			}
			if w.created != nil {
				continue // its events may have come before its waiter was registered
			}
		}
		select {
		case <-idle:
		case <-w.ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a pod of profile %q (%s): %w", prof.Name, w.what(), ctx.Err())
		case <-timer.C():
			return nil, fmt.Errorf("waiting %s for a pod of profile %q (%s): %w", prof.MaxWait, prof.Name, w.what(), scheduler.ErrWaitTimeout)
		}
	}
}

// createError classifies a failed pod creation. Rejections (admission,
// quota, invalid spec) are the profile's fault and count as failures;
// anything else is the cluster's.
func (p *Pool) createError(prof *profile.Profile, err error) error {
	if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
		p.mu.Lock()
		p.healthLocked(prof).fail(p.clock.Now(), failCreate, p.opts.BackoffBase, p.opts.BackoffMax)
		p.mu.Unlock()
		p.metrics.createFailures.WithLabelValues(prof.Name, ReasonCreate).Inc()
		p.log.Error("pod rejected", "profile", prof.Name, "err", err)
		return refusal(prof.Name, failCreate)
	}
	return fmt.Errorf("creating pod for profile %q: %w: %w", prof.Name, err, apiFailure(err))
}

// clientThrottled is how client-go words a request that its rate limiter
// held until the caller's deadline; the error carries no type to test.
const clientThrottled = "client rate limiter Wait returned an error"

// apiFailure is the sentinel for a failed API request: ErrBusy when
// podgate's own rate limiter never let the request out (the cluster may be
// fine; PODGATE_KUBE_QPS and PODGATE_KUBE_BURST are too low for the load),
// else ErrClusterUnavailable.
func apiFailure(err error) error {
	if strings.Contains(err.Error(), clientThrottled) {
		return scheduler.ErrBusy
	}
	return scheduler.ErrClusterUnavailable
}

// Release deletes a pod this replica holds; see scheduler.Pools.
func (p *Pool) Release(ctx context.Context, pod *scheduler.Pod) error {
	for _, s := range []*scheduler.Prepared{&pod.TTY, &pod.Plain} {
		if *s != nil {
			_ = (*s).Close()
			*s = nil
		}
	}
	err := p.deletePod(ctx, pod.Ref.Name, types.UID(pod.UID), "")
	if err == nil {
		return nil
	}
	// Leave the pod where the reaper will find it.
	body, perr := json.Marshal(map[string]any{"metadata": map[string]any{
		"labels": map[string]string{LabelState: StateReleased},
	}})
	if perr == nil {
		_, perr = p.client.CoreV1().Pods(p.opts.Namespace).Patch(ctx, pod.Ref.Name, types.MergePatchType, body, metav1.PatchOptions{})
	}
	return errors.Join(err, perr)
}

// deletePod deletes a pod if it still has the given UID and, when rv is
// set, is unchanged since that resourceVersion. A pod already gone is not
// an error, nor is a UID conflict (another pod of that name now); a
// resourceVersion conflict is returned, as the pod is still there.
func (p *Pool) deletePod(ctx context.Context, name string, uid types.UID, rv string) error {
	err := p.client.CoreV1().Pods(p.opts.Namespace).Delete(ctx, name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: ptrOrNil(rv)},
	})
	if err == nil || apierrors.IsNotFound(err) || (apierrors.IsConflict(err) && uid != "" && rv == "") {
		return nil
	}
	return fmt.Errorf("deleting pod %q: %w", name, err)
}

// deleteInBackground deletes a pod off the caller's critical path; Run
// waits for it before returning.
func (p *Pool) deleteInBackground(name string, uid types.UID) {
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.deletePod(ctx, name, uid, ""); err != nil {
			p.log.Warn("deleting pod", "pod", name, "err", err)
		}
	}()
}

// Alive reports whether a held pod still exists and is Ready.
func (p *Pool) Alive(pod *scheduler.Pod) bool {
	cur, ok := p.cachedPod(pod.Ref.Name)
	return ok && string(cur.UID) == pod.UID && podReady(cur)
}
