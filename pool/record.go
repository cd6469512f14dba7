package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/scheduler"
)

// The warm login on a reserved pod, and its claim record.
//
// Isolation invariant, part 3: the claim record is a JSON patch whose test
// operations fail unless the pod still has the uid the hand-out saw, is
// still reserved, and still names this replica and this run. Whatever
// happened meanwhile (the leader deleted the pod because this replica's
// Lease lapsed; a restarted process of the same replica id), the write
// fails, the user's session is ended with a plain message, and the pod is
// deleted. A merge patch with the cached resourceVersion would fail on any
// unrelated status update too; the test operations fail only on what
// matters. A response showing the pod being deleted counts as a failure.

// recordTimeout bounds one claim record write.
const recordTimeout = 15 * time.Second

// errRecordFailed is wrapped by every failed claim record.
var errRecordFailed = errors.New("claim record failed")

// handOutReserved takes one of this run's reserved pods of the profile
// from memory, and starts writing its claim record in the background. It
// returns nil when this replica may not hand out reserved pods now (its
// Lease is not known renewed; see liveness.go) or holds none Ready.
func (p *Pool) handOutReserved(prof *profile.Profile, c scheduler.Claim, now time.Time) *scheduler.Pod {
	if !p.live.mayHandOut(now) {
		return nil
	}
	rp := p.reserved.handOut(prof.Name)
	if rp == nil {
		return nil
	}
	rec, settle := scheduler.NewClaimRecord()
	p.background(func() {
		ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
		defer cancel()
		settle(p.recordClaim(ctx, prof, rp, c))
	})
	pod := &scheduler.Pod{
		Ref:     scheduler.PodRef{Namespace: p.opts.Namespace, Name: rp.name, Container: prof.Container()},
		UID:     string(rp.uid),
		Profile: prof.Name,
		Warm:    true,
		Record:  rec,
	}
	if rp.stream != nil {
		pod.Stream = p.kinds.observe(prof.Name, rp.stream)
	}
	p.metrics.reservedHandouts.WithLabelValues(prof.Name).Inc()
	return pod
}

// recordClaim writes the claim record of a reserved pod handed out for c.
// On failure it deletes the pod, counts and logs why, and returns an error
// that tells the user plainly.
func (p *Pool) recordClaim(ctx context.Context, prof *profile.Profile, rp *reservedPod, c scheduler.Claim) error {
	cached, _ := p.cachedPod(rp.name)
	hasAnn := cached != nil && len(cached.Annotations) > 0
	body, err := claimRecordPatch(rp.uid, p.opts.ReplicaID, p.run, c, p.clock.Now(), hasAnn)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.api.downCtx(), cancel)()
	got, err := p.client.CoreV1().Pods(p.opts.Namespace).Patch(ctx, rp.name, types.JSONPatchType, body, metav1.PatchOptions{})
	reason := ""
	switch {
	case err == nil && got.DeletionTimestamp != nil:
		reason = "deleting"
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		reason = "gone"
	case apierrors.IsInvalid(err) || apierrors.IsConflict(err) || isTestFailed(err):
		reason = "changed"
	default:
		reason = "error"
	}
	p.metrics.recordFailures.WithLabelValues(prof.Name, reason).Inc()
	p.log.Warn("claim record failed; ending the session and deleting the pod",
		"pod", rp.name, "profile", prof.Name, "user", c.Identity.User, "conn", c.Identity.ConnID, "reason", reason, "err", err)
	p.deleteInBackground(rp.name, rp.uid, removal{scheduler.EventClaimRecordFailed, fmt.Sprintf(
		"the claim for user %q, connection %s, could not be recorded (%s: the pod was no longer this replica's); the session was ended and the pod is deleted",
		c.Identity.User, c.Identity.ConnID, reason)})
	return &scheduler.Refusal{
		Err:    fmt.Errorf("recording the claim of pod %q (%s): %w: %w: %w", rp.name, reason, err, errRecordFailed, scheduler.ErrPodGone),
		Reason: "your pod was taken back before your session started, please reconnect",
	}
}

// isTestFailed reports a JSON patch whose test operation failed; the API
// server answers it with 422 and the patch library's words.
func isTestFailed(err error) bool {
	var st apierrors.APIStatus
	return errors.As(err, &st) && st.Status().Code == 422 || strings.Contains(err.Error(), "testing value")
}

// claimRecordPatch is the JSON patch that records a claim of a reserved
// pod: test operations on the uid, state, owner and run, then the claim's
// labels and annotations. hasAnn says whether the pod has annotations
// already (every pod podgate creates has); without, the map is added whole.
func claimRecordPatch(uid types.UID, owner, run string, c scheduler.Claim, now time.Time, hasAnn bool) ([]byte, error) {
	ops := []jsonOp{
		{Op: "test", Path: "/metadata/uid", Value: string(uid)},
		{Op: "test", Path: labelPath(LabelState), Value: StateReserved},
		{Op: "test", Path: labelPath(LabelOwner), Value: owner},
		{Op: "test", Path: labelPath(LabelRun), Value: run},
		{Op: "replace", Path: labelPath(LabelState), Value: StateClaimed},
		{Op: "add", Path: labelPath(LabelSession), Value: labelValue(c.Session)},
		{Op: "add", Path: labelPath(LabelUserKey), Value: labelValue(c.UserKey)},
	}
	ann := claimAnnotations(c, now)
	if hasAnn {
		for _, k := range []string{AnnUser, AnnRemoteAddr, AnnConnID, AnnClaimedAt} {
			ops = append(ops, jsonOp{Op: "add", Path: "/metadata/annotations/" + escapePointer(k), Value: ann[k]})
		}
	} else {
		ops = append(ops, jsonOp{Op: "add", Path: "/metadata/annotations", Value: ann})
	}
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encoding claim record: %w", err)
	}
	return b, nil
}

// relabelPatch is the JSON patch by which the leader reserves an idle pod
// for owner's run: it fails unless the pod still has uid and is idle, so a
// replica that claimed it meanwhile keeps it.
func relabelPatch(uid types.UID, owner, run string) ([]byte, error) {
	return json.Marshal([]jsonOp{
		{Op: "test", Path: "/metadata/uid", Value: string(uid)},
		{Op: "test", Path: labelPath(LabelState), Value: StateIdle},
		{Op: "replace", Path: labelPath(LabelState), Value: StateReserved},
		{Op: "add", Path: labelPath(LabelOwner), Value: owner},
		{Op: "add", Path: labelPath(LabelRun), Value: run},
	})
}

// giveBackPatch is the JSON patch by which an owner makes one of its
// reserved pods idle again; it fails unless the pod is still its own.
func giveBackPatch(uid types.UID, owner, run string) ([]byte, error) {
	return json.Marshal(letGoOps(uid, StateReserved, StateIdle, owner, run))
}

// letGoOps are the JSON patch operations by which a run lets go of one of
// its pods, moving it from state from to state to: they fail unless the
// pod still has uid, is in from and names owner and run, and they take
// owner and run off, so that no replica's reap of its own pods touches it.
func letGoOps(uid types.UID, from, to, owner, run string) []jsonOp {
	return []jsonOp{
		{Op: "test", Path: "/metadata/uid", Value: string(uid)},
		{Op: "test", Path: labelPath(LabelState), Value: from},
		{Op: "test", Path: labelPath(LabelOwner), Value: owner},
		{Op: "test", Path: labelPath(LabelRun), Value: run},
		{Op: "replace", Path: labelPath(LabelState), Value: to},
		{Op: "remove", Path: labelPath(LabelOwner)},
		{Op: "remove", Path: labelPath(LabelRun)},
	}
}

// jsonOp is one RFC 6902 operation.
type jsonOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

func labelPath(key string) string { return "/metadata/labels/" + escapePointer(key) }

// escapePointer escapes a key for a JSON pointer (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// giveBack makes surplus reserved pods, already taken out of the reserved
// set, idle again; a pod that cannot be is deleted.
func (p *Pool) giveBack(pods []*reservedPod) {
	for _, rp := range pods {
		rp.closeStream()
		p.background(func() {
			ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
			defer cancel()
			if err := p.patchIdle(ctx, rp); err != nil {
				p.log.Info("giving a reserved pod back failed; deleting it", "pod", rp.name, "err", err)
				p.deleteInBackground(rp.name, rp.uid, reaped("replica "+p.opts.ReplicaID+" held more than its share, and giving the pod back to the pool failed"))
			}
		})
	}
	if len(pods) > 0 {
		p.log.Debug("gave reserved pods back to the pool", "count", len(pods))
	}
}

// patchIdle makes one of this run's reserved pods idle again with
// giveBackPatch; a pod already gone is not an error.
func (p *Pool) patchIdle(ctx context.Context, rp *reservedPod) error {
	body, err := giveBackPatch(rp.uid, p.opts.ReplicaID, p.run)
	if err == nil {
		_, err = p.client.CoreV1().Pods(p.opts.Namespace).Patch(ctx, rp.name, types.JSONPatchType, body, metav1.PatchOptions{})
	}
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// shutdownReturnTimeout bounds how long a stopping replica spends giving
// its reserved pods back; it stays well inside PODGATE_DRAIN_DEADLINE's
// default and the pod's termination grace period.
const shutdownReturnTimeout = 5 * time.Second

// returnReserved gives this run's reserved pods back to the pool as idle
// when the replica stops, so that the next replica (or this one, restarted)
// serves them instead of waiting for the leader to delete them once this
// replica's Lease lapses. It is safe because the set holds only pods never
// handed out: a hand-out takes the pod out of the set first, so no user
// command ever ran in them. Each patch is conditional on the pod still
// being this run's reserved pod; one that fails is left to the leader,
// which deletes a lapsed replica's reserved pods (the isolation invariant),
// so a failure here costs a warm pod, never a user's isolation.
func (p *Pool) returnReserved(pods []*reservedPod) {
	if len(pods) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownReturnTimeout)
	defer cancel()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for _, rp := range pods {
		rp.closeStream()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.patchIdle(ctx, rp); err != nil {
				failed.Add(1)
				p.log.Info("giving a reserved pod back at shutdown failed; the leader deletes it once this replica's Lease lapses", "pod", rp.name, "err", err)
			}
		}()
	}
	wg.Wait()
	p.log.Info("gave reserved pods back to the pool at shutdown", "count", len(pods)-int(failed.Load()), "failed", failed.Load())
}

// ownPodDoomed reports why this run's reserved pod must go, or "".
func ownPodDoomed(pod *corev1.Pod, prof *profile.Profile) removal {
	switch f, bad := podFailure(pod); {
	case prof == nil:
		return reaped(fmt.Sprintf("profile %q was removed", pod.Labels[LabelProfile]))
	case pod.Labels[LabelHash] != prof.Hash:
		return reaped(fmt.Sprintf("profile %q has a new template", prof.Name))
	case bad:
		return cannotStart(prof.Name, f, pod)
	}
	return removal{}
}
