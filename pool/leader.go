package pool

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// leadership is this replica's current leadership term, if any. Its lock
// is a leaf.
type leadership struct {
	mu sync.Mutex // protects ctx and term
	// ctx is the term's context, nil while another replica leads;
	// creations and deletes by the leader use it.
	ctx context.Context
	// term is the leader Lease's transition count when the term began.
	term int
}

// current returns the term's context (nil when not leading) and number.
func (l *leadership) current() (context.Context, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ctx, l.term
}

func (l *leadership) set(ctx context.Context, term int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ctx, l.term = ctx, term
}

// end ends the term.
func (l *leadership) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ctx, l.term = nil, 0
}

// termLock is the leader Lease's lock, remembering the transition count
// of the record it last wrote: the term a new leader publishes its splits
// under.
type termLock struct {
	resourcelock.Interface
	transitions atomic.Int64
}

func (l *termLock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Create(ctx, ler)
	if err == nil {
		l.transitions.Store(int64(ler.LeaderTransitions))
	}
	return err
}

func (l *termLock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Update(ctx, ler)
	if err == nil {
		l.transitions.Store(int64(ler.LeaderTransitions))
	}
	return err
}

// elect takes part in leader election until ctx ends. While this replica
// leads, leadership holds the term and the sync loop replenishes and reaps.
func (p *Pool) elect(ctx context.Context) error {
	lock := &termLock{Interface: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: LeaderLeaseName, Namespace: p.opts.Namespace},
		Client:     p.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: p.opts.ReplicaID},
	}}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   p.opts.LeaderLeaseDuration,
		RenewDeadline:   p.opts.LeaderRenewDeadline,
		RetryPeriod:     p.opts.LeaderRetryPeriod,
		ReleaseOnCancel: true,
		Name:            LeaderLeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				p.log.Info("leading the pool", "replica", p.opts.ReplicaID)
				p.startLeading(lctx, int(lock.transitions.Load()))
			},
			OnStoppedLeading: func() {
				p.log.Info("stopped leading the pool", "replica", p.opts.ReplicaID)
				p.stopLeading()
			},
		},
	})
	if err != nil {
		return fmt.Errorf("creating leader elector: %w", err)
	}
	for ctx.Err() == nil {
		// Run returns when leadership is lost; stand again.
		le.Run(ctx)
	}
	return nil
}

// startLeading begins a term: the sizers adopt the spare pods the cache
// shows (a failover must neither trim a pool the previous leader grew nor
// grow it), and a sync pass follows.
func (p *Pool) startLeading(lctx context.Context, term int) {
	now := p.clock.Now()
	for _, prof := range p.profiles.Valid() {
		p.demand.adopt(prof, p.spareOfTemplate(prof.Name, prof.Hash), now)
	}
	p.lead.set(lctx, term)
	p.poke()
}

// stopLeading ends the term; the next renewal stops publishing a split.
func (p *Pool) stopLeading() {
	p.lead.end()
	p.live.offerShares(nil)
	p.poke()
}

// Leading reports whether this replica currently replenishes and reaps.
func (p *Pool) Leading() bool {
	ctx, _ := p.lead.current()
	return ctx != nil
}
