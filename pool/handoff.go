package pool

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/scheduler"
)

// Handoff: a user waiting for a cold pod takes the first pod of the
// profile that is ready, their own or an idle one.
//
// Without it, a burst's waiters each wait for the pod created for them
// while the refill pods the same burst started turn Ready and sit idle. A
// waiter that takes an idle pod gives its own, still starting, to the pool
// in exchange, so no start is wasted and the pool's count is unchanged.

// idleReadySignal returns a channel closed the next time the informer sees
// an idle Ready pod of profile.
func (p *Pool) idleReadySignal(profile string) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := p.idleReady[profile]
	if ch == nil {
		ch = make(chan struct{})
		p.idleReady[profile] = ch
	}
	return ch
}

// signalIdleReadyLocked wakes every waiter of profile.
func (p *Pool) signalIdleReadyLocked(profile string) {
	if ch := p.idleReady[profile]; ch != nil {
		close(ch)
		delete(p.idleReady, profile)
	}
}

// handoff claims an idle Ready pod for a user queued under key, and gives
// own, their cold pod if they have one yet, to the pool as an idle pod.
// Idle pods go to the longest waiters: with n idle Ready pods, only the
// first n waiters in the profile's queue try. It reports false, and
// changes nothing, when no idle pod could be claimed.
func (p *Pool) handoff(ctx context.Context, prof *profile.Profile, c scheduler.Claim, key string, own *corev1.Pod, created time.Time) (*scheduler.Pod, bool) {
	cands := p.candidates(prof)
	if p.queuePosition(prof.Name, key) >= len(cands) {
		return nil, false
	}
	pod, err := p.claimIdle(ctx, prof, cands, c, "handoff")
	if err != nil {
		return nil, false
	}
	if own != nil {
		p.recycle(own, created)
	}
	return pod, true
}

// recycle turns a cold pod nobody waits for any more into an idle pod of
// the pool, or deletes it should that fail. It runs before the waiter gets
// its pod, so that once a user is attached no pod but theirs carries their
// claim (one PATCH, a few milliseconds after a wait of seconds). The UID
// precondition makes sure a pod of the same name created since is never
// touched. created is when own was created: its start is measured when it
// turns Ready, as a cold pod's is.
func (p *Pool) recycle(own *corev1.Pod, created time.Time) {
	p.mu.Lock()
	p.recycled[own.Name] = created
	p.mu.Unlock()
	body, err := recyclePatch(own.UID)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = p.client.CoreV1().Pods(p.opts.Namespace).Patch(ctx, own.Name, types.MergePatchType, body, metav1.PatchOptions{})
	}
	if err != nil {
		p.log.Warn("giving a cold pod to the pool", "pod", own.Name, "err", err)
		p.deleteInBackground(own.Name, own.UID)
	}
}

// recyclePatch is the merge patch that makes a claimed cold pod idle: the
// claim's labels and annotations are removed (null), and the uid
// precondition fails the patch for any other pod of that name.
func recyclePatch(uid types.UID) ([]byte, error) {
	return json.Marshal(map[string]any{"metadata": map[string]any{
		"uid": uid,
		"labels": map[string]any{
			LabelState:   StateIdle,
			LabelOwner:   nil,
			LabelSession: nil,
		},
		"annotations": map[string]any{
			AnnUser: nil, AnnRemoteAddr: nil, AnnConnID: nil, AnnClaimedAt: nil, AnnCold: nil,
		},
	}})
}

// queuePosition is the 0-based place of the waiter queued under key (its
// cold pod's name, or a key of its own while it has none) among the users
// of profile waiting (past the end when it is not queued).
func (p *Pool) queuePosition(profile, key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.coldQueue[profile]
	if i := slices.Index(q, key); i >= 0 {
		return i
	}
	return len(q)
}
