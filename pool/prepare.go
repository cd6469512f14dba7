package pool

import (
	"context"
	"sync"
	"time"

	"github.com/podgate/podgate/scheduler"
)

// Prepared streams. Only a pod's owner opens a stream into it, and only
// into its own reserved pods: one stream per pod, of the kind its profile's
// logins open first (a terminal, for most), learned from the logins this
// replica served (streamKinds). A login of the other kind execs afresh, and
// its connection prepares a spare of its own kind for its next session.

// prepareTimeout bounds the opening of one pod's prepared stream; a
// healthy exec is ready in well under a second.
const prepareTimeout = 30 * time.Second

// prepareWorker opens streams for queued reserved pods until the queue
// shuts down. PrepareConcurrency workers bound the load on the API server.
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

// prepareOne opens the stream of one reserved pod, if the pod still waits
// for one. Should the pod leave the reserved set while the stream opens,
// the set refuses the stream and it is closed. A pod whose stream fails to
// open stays reserved, bare: its login execs afresh.
func (p *Pool) prepareOne(ctx context.Context, name string) {
	rp, ok := p.reserved.toPrepare(name)
	if !ok {
		return
	}
	e, ok := p.profiles.Get(rp.profile)
	if !ok || e.Profile == nil {
		return
	}
	ref := scheduler.PodRef{Namespace: p.opts.Namespace, Name: name, Container: e.Profile.Container()}
	// A stream that never becomes ready (an exec into a pod that is going
	// away can hang in the kubelet) must not hold this worker forever.
	ctx, cancel := context.WithTimeout(ctx, prepareTimeout)
	defer cancel()
	stream, err := p.execer.Prepare(ctx, ref, p.kinds.tty(rp.profile))
	if err != nil {
		p.log.Debug("preparing stream", "pod", name, "err", err)
		stream = nil
	}
	if !p.reserved.prepared(name, rp.uid, stream) && stream != nil {
		_ = stream.Close()
	}
}

// kindWindow is how many recent logins decide the kind prepared.
const kindWindow = 32

// streamKinds learns, per profile, which stream kind logins open first:
// a terminal, unless most of the last kindWindow logins this replica served
// from a prepared stream used (or, unused, gave up) a plain one. Its lock is
// a leaf.
type streamKinds struct {
	mu    sync.Mutex // protects votes
	votes map[string]*kindVotes
}

// kindVotes is a ring of the last kindWindow votes, true for a terminal.
type kindVotes struct {
	ring    [kindWindow]bool
	next, n int
}

func newStreamKinds() *streamKinds { return &streamKinds{votes: map[string]*kindVotes{}} }

// tty reports whether the profile's next prepared stream should be a
// terminal.
func (k *streamKinds) tty(profile string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	v := k.votes[profile]
	if v == nil {
		return true
	}
	ttys := 0
	for i := range v.n {
		if v.ring[i] {
			ttys++
		}
	}
	return 2*ttys >= v.n
}

func (k *streamKinds) vote(profile string, tty bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v := k.votes[profile]
	if v == nil {
		v = &kindVotes{}
		k.votes[profile] = v
	}
	v.ring[v.next] = tty
	v.next = (v.next + 1) % kindWindow
	v.n = min(v.n+1, kindWindow)
}

// observe wraps a prepared stream handed out for a login so that its fate
// votes: run, it was the kind the login wanted; closed unused, the other.
func (k *streamKinds) observe(profile string, s scheduler.Prepared) scheduler.Prepared {
	return &votingStream{Prepared: s, vote: func(tty bool) { k.vote(profile, tty) }}
}

// votingStream is a prepared stream that votes once, on its first Run or
// Close.
type votingStream struct {
	scheduler.Prepared
	once sync.Once
	vote func(tty bool)
}

func (v *votingStream) Run(ctx context.Context, cmd scheduler.Command) (scheduler.ExitStatus, error) {
	v.once.Do(func() { v.vote(cmd.Pty != nil) })
	return v.Prepared.Run(ctx, cmd)
}

func (v *votingStream) Close() error {
	v.once.Do(func() { v.vote(!v.Prepared.TTY()) })
	return v.Prepared.Close()
}
