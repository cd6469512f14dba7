package pool

import (
	"context"
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

// abandon remembers a claim of unknown outcome.
func (p *Pool) abandon(pod *corev1.Pod, session string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.abandoned[pod.Name] = abandonedClaim{rv: pod.ResourceVersion, session: session, at: p.clock.Now()}
}

// settleAbandoned deletes pods that abandoned claims turned out to have
// claimed, and forgets claims whose outcome is known.
func (p *Pool) settleAbandoned(now time.Time) {
	p.mu.Lock()
	names := make([]string, 0, len(p.abandoned))
	for n := range p.abandoned {
		names = append(names, n)
	}
	p.mu.Unlock()
	for _, n := range names {
		pod, _ := p.cachedPod(n)
		p.mu.Lock()
		a, ok := p.abandoned[n]
		v := judgeAbandoned(a, pod, p.opts.ReplicaID, now)
		if ok && v != abandonWait {
			delete(p.abandoned, n)
		}
		p.mu.Unlock()
		if ok && v == abandonDelete {
			p.log.Info("deleting a pod claimed by a claim that was given up", "pod", n)
			p.deleteInBackground(n, pod.UID)
		}
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
