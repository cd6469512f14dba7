package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
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

// Claim hands out a warm pod of the profile's current template; see
// scheduler.Pools. First choice is one of this run's reserved pods, from
// memory and with its prepared stream: no API call before the user's
// command starts, the claim record being written in parallel (record.go).
// Next is an unreserved idle pod: each attempt is one merge PATCH carrying
// the cached resourceVersion, so of two replicas claiming one pod the API
// server lets exactly one win (the other gets 409 Conflict and tries its
// next candidate).
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
	now := p.clock.Now()
	p.demand.login(prof, now)
	p.live.wantRose(prof.Name, p.demand.want(prof, now))
	if pod := p.handOutReserved(prof, c, now); pod != nil {
		p.metrics.claims.WithLabelValues(prof.Name, "hit").Inc()
		return pod, nil
	}
	pod, err := p.claimUnreserved(ctx, prof, p.candidates(prof), c, "hit")
	if errors.Is(err, scheduler.ErrNoIdlePod) {
		p.metrics.claims.WithLabelValues(prof.Name, "miss").Inc()
	}
	return pod, err
}

// claimUnreserved tries cands, the profile's idle Ready pods, in turn until
// one claim wins, counting a win under result ("hit", or "handoff" for a
// user already waiting for a cold pod). It fails with ErrNoIdlePod when
// every candidate is gone or taken, and counts nothing then.
func (p *Pool) claimUnreserved(ctx context.Context, prof *profile.Profile, cands []*corev1.Pod, c scheduler.Claim, result string) (*scheduler.Pod, error) {
	for _, cand := range cands {
		if !p.claiming.start(cand.Name) {
			continue
		}
		body, err := claimPatch(cand.ResourceVersion, p.opts.ReplicaID, p.run, c, p.clock.Now())
		if err != nil {
			p.claiming.forget(cand.Name)
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
			p.claiming.won(cand.Name)
			return claimedPod(prof, got, result == "hit"), nil
		case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
			// Someone else won this pod (or it changed or vanished);
			// the informer will catch up, try the next one.
			p.metrics.claims.WithLabelValues(prof.Name, "conflict").Inc()
			p.claiming.forget(cand.Name)
		default:
			p.metrics.claims.WithLabelValues(prof.Name, "error").Inc()
			p.claiming.forget(cand.Name)
			p.abandoned.add(cand, labelValue(c.Session), p.clock.Now())
			return nil, fmt.Errorf("claiming pod %q: %w: %w", cand.Name, err, apiFailure(err))
		}
	}
	return nil, fmt.Errorf("profile %q: %w", prof.Name, scheduler.ErrNoIdlePod)
}

// candidates lists the profile's unreserved idle Ready pods of the current
// template that this replica is neither claiming nor deleting, shuffled so
// that replicas claiming at once rarely pick the same pod.
func (p *Pool) candidates(prof *profile.Profile) []*corev1.Pod {
	objs, _ := p.pods.GetIndexer().ByIndex(indexIdleReady, prof.Name)
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		pod, ok := o.(*corev1.Pod)
		if !ok || pod.Labels[LabelHash] != prof.Hash || p.claiming.has(pod.Name) || p.deleting.has(pod.Name) {
			continue
		}
		out = append(out, pod)
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// claimedPod is the scheduler's view of a pod this replica now holds.
func claimedPod(prof *profile.Profile, pod *corev1.Pod, warm bool) *scheduler.Pod {
	return &scheduler.Pod{
		Ref:     scheduler.PodRef{Namespace: pod.Namespace, Name: pod.Name, Container: prof.Container()},
		UID:     string(pod.UID),
		Profile: prof.Name,
		Warm:    warm,
	}
}

// claiming holds the unreserved pods this replica is claiming or has
// claimed, until the informer shows them no longer idle, so that local
// claimers never race each other for one pod, and a pod whose PATCH
// returned before the watch showed it stays out of the candidates. Its
// lock is a leaf.
type claiming struct {
	mu    sync.Mutex // protects names
	names map[string]claimProgress
}

// claimProgress is how far a claim by this replica has got.
type claimProgress uint8

const (
	// claimInFlight: the PATCH is in flight and the watch has not yet
	// shown the pod claimed.
	claimInFlight claimProgress = iota
	// claimSeen: the watch showed the claim before the PATCH returned.
	claimSeen
	// claimWon: the PATCH returned and the watch has not yet shown the
	// claim; the pod stays out of the candidates until it does.
	claimWon
)

func newClaiming() *claiming { return &claiming{names: map[string]claimProgress{}} }

// start marks a pod as being claimed here; false when another local
// claimer already has it.
func (c *claiming) start(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, t := c.names[name]; t {
		return false
	}
	c.names[name] = claimInFlight
	return true
}

// won records a PATCH that returned: the entry has done its job if the
// watch already showed the claim, else it waits for the watch.
func (c *claiming) won(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.names[name] == claimSeen {
		delete(c.names, name)
	} else {
		c.names[name] = claimWon
	}
}

// observe updates the set from an event of a pod that is no longer idle.
func (c *claiming) observe(pod *corev1.Pod, replica string) {
	if pod.Labels[LabelState] == StateIdle {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if pr, ok := c.names[pod.Name]; ok && pr == claimInFlight && pod.Labels[LabelOwner] == replica {
		c.names[pod.Name] = claimSeen
		return
	}
	delete(c.names, pod.Name)
}

func (c *claiming) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.names, name)
}

func (c *claiming) has(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.names[name]
	return ok
}

// claimAnnotations are the annotations a claim sets: who the pod is for.
func claimAnnotations(c scheduler.Claim, now time.Time) map[string]string {
	return map[string]string{
		AnnUser:       c.Identity.User,
		AnnRemoteAddr: c.Identity.RemoteAddr,
		AnnConnID:     c.Identity.ConnID,
		AnnClaimedAt:  now.UTC().Format(time.RFC3339Nano),
	}
}

// claimPatch is the merge patch that claims an unreserved pod. With rv
// set, the API server rejects it with 409 unless the pod is unchanged since
// the cache saw it.
func claimPatch(rv, owner, run string, c scheduler.Claim, now time.Time) ([]byte, error) {
	meta := map[string]any{
		"labels": map[string]string{
			LabelState:   StateClaimed,
			LabelOwner:   owner,
			LabelRun:     run,
			LabelSession: labelValue(c.Session),
			LabelUserKey: labelValue(c.UserKey),
		},
		"annotations": claimAnnotations(c, now),
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

// newPod renders a profile's template into a pod in the given state: idle,
// reserved for owner (of run), or claimed for c (a cold pod, whose owner is
// this replica).
func (p *Pool) newPod(prof *profile.Profile, state, owner, run string, c *scheduler.Claim, now time.Time) *corev1.Pod {
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
	// Every pod carries AnnCold, so that its annotations always exist and
	// the claim record's JSON patch can add to them.
	pod.Annotations[AnnCold] = "false"
	if owner != "" {
		pod.Labels[LabelOwner] = owner
		pod.Labels[LabelRun] = run
	}
	if c != nil {
		pod.Labels[LabelSession] = labelValue(c.Session)
		pod.Labels[LabelUserKey] = labelValue(c.UserKey)
		for k, v := range claimAnnotations(*c, now) {
			pod.Annotations[k] = v
		}
		pod.Annotations[AnnCold] = "true"
	}
	return pod
}

// createError classifies a failed pod creation. Rejections (admission,
// quota, invalid spec) are the profile's fault and count as failures;
// anything else is the cluster's.
func (p *Pool) createError(prof *profile.Profile, err error) error {
	if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
		p.demand.createRejected(prof, p.clock.Now())
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
