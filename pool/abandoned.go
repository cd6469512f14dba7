package pool

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// A claim whose PATCH failed with anything but a conflict (a timeout, a
// dropped connection, a call cancelled because the API server went away)
// has an unknown outcome: the API server may have applied it after all.
// Such a pod would stay claimed by this replica for a connection that no
// longer wants it, and no reaper takes a live replica's pods. So the claim
// is remembered as abandoned, and every sync pass settles it from the
// cache: once the cached pod has moved past the resourceVersion the claim
// was made against, either the claim took (the pod is claimed by this
// replica for that session: it is deleted) or it did not (nothing to do).

// abandonedTTL bounds how long an abandoned claim is remembered when the
// cache never shows the pod move on (it was deleted, or the claim never
// reached the API server and nothing else changed the pod).
const abandonedTTL = 10 * time.Minute

// abandonedClaim is one claim of unknown outcome.
type abandonedClaim struct {
	rv      string // the resourceVersion the claim was made against
	session string // the session label the claim set
	at      time.Time
}

// abandonVerdict says what to do about an abandoned claim given the cached
// pod (nil when the cache has no such pod): forget it, delete the pod, or
// wait for the cache to catch up.
type abandonVerdict int

const (
	abandonWait abandonVerdict = iota
	abandonForget
	abandonDelete
)

func judgeAbandoned(a abandonedClaim, pod *corev1.Pod, replica string, now time.Time) abandonVerdict {
	switch {
	case pod != nil && pod.ResourceVersion != a.rv:
		if pod.DeletionTimestamp == nil && pod.Labels[LabelState] == StateClaimed &&
			pod.Labels[LabelOwner] == replica && pod.Labels[LabelSession] == a.session {
			return abandonDelete
		}
		return abandonForget
	case now.Sub(a.at) > abandonedTTL:
		return abandonForget
	}
	return abandonWait
}

// abandonedClaims holds claims of unknown outcome by pod name. Its lock is
// a leaf.
type abandonedClaims struct {
	mu     sync.Mutex // protects claims
	claims map[string]abandonedClaim
}

func newAbandonedClaims() *abandonedClaims {
	return &abandonedClaims{claims: map[string]abandonedClaim{}}
}

// add remembers a claim of unknown outcome.
func (a *abandonedClaims) add(pod *corev1.Pod, session string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.claims[pod.Name] = abandonedClaim{rv: pod.ResourceVersion, session: session, at: now}
}

// settle judges each remembered claim against lookup's pod, forgetting
// those whose outcome is known, and returns the pods to delete.
func (a *abandonedClaims) settle(lookup func(string) *corev1.Pod, replica string, now time.Time) []*corev1.Pod {
	a.mu.Lock()
	names := make([]string, 0, len(a.claims))
	for n := range a.claims {
		names = append(names, n)
	}
	a.mu.Unlock()
	var doomed []*corev1.Pod
	for _, n := range names {
		pod := lookup(n)
		a.mu.Lock()
		c, ok := a.claims[n]
		v := judgeAbandoned(c, pod, replica, now)
		if ok && v != abandonWait {
			delete(a.claims, n)
		}
		a.mu.Unlock()
		if ok && v == abandonDelete {
			doomed = append(doomed, pod)
		}
	}
	return doomed
}

// settleAbandoned deletes pods that abandoned claims turned out to have
// claimed, and forgets claims whose outcome is known.
func (p *Pool) settleAbandoned(now time.Time) {
	lookup := func(name string) *corev1.Pod {
		pod, _ := p.cachedPod(name)
		return pod
	}
	for _, pod := range p.abandoned.settle(lookup, p.opts.ReplicaID, now) {
		p.log.Info("deleting a pod claimed by a claim that was given up", "pod", pod.Name)
		p.deleteInBackground(pod.Name, pod.UID, reaped("claimed by a login that had already given up"))
	}
}

// downCtx returns a context that ends when the API server is found
// unavailable, so that calls in flight then give up at once instead of
// waiting for an answer that is not coming.
func (h *apiHealth) downCtx() context.Context {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.downSignal == nil {
		h.downSignal, h.signalDown = context.WithCancel(context.Background())
	}
	return h.downSignal
}
