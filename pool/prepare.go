package pool

import (
	"context"
	"time"

	"github.com/podgate/podgate/scheduler"
)

// prepareTimeout bounds the opening of one pod's prepared streams; a
// healthy exec is ready in well under a second.
const prepareTimeout = 30 * time.Second

// prepareWorker opens streams for queued idle pods until the queue shuts
// down. PrepareConcurrency workers bound the load on the API server.
func (p *Pool) prepareWorker(ctx context.Context) {
	for {
		name, shutdown := p.prepQueue.Get()
		if shutdown {
			return
		}
		p.prepareOne(ctx, name)
		p.prepQueue.Done(name)
	}
}

// prepareOne opens one TTY and one plain stream for an idle pod and keeps
// them with it. A placeholder entry marks the work as started; if the pod
// is claimed elsewhere or disappears meanwhile, the entry is gone (or is
// another one) by the time the streams are ready, and they are closed.
// A pod whose streams fail to open is not retried: it stays claimable and
// its claimer execs the ordinary way.
func (p *Pool) prepareOne(ctx context.Context, name string) {
	pod, ok := p.cachedPod(name)
	if !ok || pod.Labels[LabelState] != StateIdle || !podReady(pod) {
		return
	}
	e, ok := p.profiles.Get(pod.Labels[LabelProfile])
	if !ok || e.Profile == nil || pod.Labels[LabelHash] != e.Profile.Hash {
		return
	}
	s := &streams{uid: string(pod.UID)}
	p.mu.Lock()
	_, taken := p.taken[name]
	if taken || p.prepared[name] != nil {
		p.mu.Unlock()
		return
	}
	p.prepared[name] = s
	p.mu.Unlock()

	ref := scheduler.PodRef{Namespace: pod.Namespace, Name: pod.Name, Container: e.Profile.Container()}
	// A stream that never becomes ready (an exec into a pod that is going
	// away can hang in the kubelet) must not hold this worker, and its
	// goroutines, forever.
	ctx, cancel := context.WithTimeout(ctx, prepareTimeout)
	defer cancel()
	tty, err := p.execer.Prepare(ctx, ref, true)
	if err != nil {
		p.log.Debug("preparing tty stream", "pod", name, "err", err)
	}
	plain, err := p.execer.Prepare(ctx, ref, false)
	if err != nil {
		p.log.Debug("preparing plain stream", "pod", name, "err", err)
	}
	p.mu.Lock()
	if p.prepared[name] == s {
		s.tty, s.plain = tty, plain
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	(&streams{tty: tty, plain: plain}).close()
}

// dropStreamsLocked forgets a pod's streams and returns them for closing
// outside the lock.
func (p *Pool) dropStreamsLocked(name string) *streams {
	s := p.prepared[name]
	delete(p.prepared, name)
	return s
}

// closeAllStreams closes every stream still held, on the way out of Run.
func (p *Pool) closeAllStreams() {
	p.mu.Lock()
	all := p.prepared
	p.prepared = map[string]*streams{}
	p.mu.Unlock()
	for _, s := range all {
		s.close()
	}
}

// preparedCount is the number of idle pods with at least one open stream;
// placeholders of streams still opening do not count.
func (p *Pool) preparedCount() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.prepared {
		if s.open() {
			n++
		}
	}
	return float64(n)
}
