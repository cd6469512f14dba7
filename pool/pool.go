// Package pool keeps warm pods for every profile and hands them out. It is
// domain logic fed by informers: one label-scoped pod informer shows every
// managed pod, and one Lease informer every replica's liveness Lease.
//
// Most of the idle target is reserved: each live replica owns a share of the
// pool's idle pods (state reserved), prepares one exec stream into each, and
// hands them out from memory, so that a warm login makes no API call before
// the user's command runs; the claim record is written in parallel, with
// test operations that fail unless the pod is still this run's. The rest
// stays unreserved (state idle): any replica claims one with a conditional
// PATCH and a fresh exec. Only the replica holding the podgate-pool-leader
// Lease creates pods, decides the split (split.go), relabels idle pods for
// a replica short of its share, and reaps: the pods of replicas whose
// liveness Lease lapsed, released pods, pods of removed profiles, and
// parked pods whose reconnect window has passed (park.go).
//
// Shape and locks. Pool holds no mutex of its own. Each concern is a small
// type with its own lock: creations and relabels in flight (inflight.go),
// deletions in flight, unreserved claims in flight (claiming), the users
// waiting for a pod (wait.go), this run's reserved pods and their streams
// (reserved.go), health and demand (demand.go), the liveness Lease
// (liveness.go), the leadership term (leader.go), abandoned claims, the
// parks waiting for the cache (park.go), the API's health, and the pods
// classified for the sync pass (podindex.go). Lock order: every one of
// these locks is a leaf (no type calls another, the API server or a
// callback while it holds its own lock) but for one pair: deletions tell
// the pod index of each change under their lock, so that the two never
// disagree; the order is deletions, then the index.
package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/scheduler"
)

// Profiles is the subset of profile.Store the pool uses.
type Profiles interface {
	Get(name string) (profile.Entry, bool)
	Valid() []*profile.Profile
	Changed() <-chan struct{}
	HasSynced() bool
}

var _ Profiles = (*profile.Store)(nil)

// Preparer opens exec streams ahead of time; it is the subset of
// scheduler.Execer the pool uses. It may be nil to disable prepared streams.
type Preparer interface {
	Prepare(ctx context.Context, pod scheduler.PodRef, tty bool) (scheduler.Prepared, error)
}

var _ Preparer = scheduler.Execer(nil)

// Options tune a Pool. Zero values take the defaults noted.
type Options struct {
	// Namespace is the guest namespace; required.
	Namespace string
	// ReplicaID identifies this replica in owner labels and Leases;
	// required, a DNS-1123 label.
	ReplicaID string

	LeaderLeaseDuration time.Duration // default 15s
	LeaderRenewDeadline time.Duration // default 10s
	LeaderRetryPeriod   time.Duration // default 2s
	// LivenessLeaseDuration is how long a replica counts as alive after
	// its last renewal (default 15s); it renews every LivenessRenew
	// (default a third of it).
	LivenessLeaseDuration time.Duration
	LivenessRenew         time.Duration
	// ValidityMargin is how long before its Lease would lapse a replica
	// stops handing out reserved pods (default a fifth of the Lease); see
	// liveness.go.
	ValidityMargin time.Duration

	ReadyTimeout         time.Duration // not Ready by then: deleted (default 2m)
	MaxIdleAge           time.Duration // idle pods older are replaced; 0 keeps them forever
	MaxConcurrentCreates int           // default 10
	MaxStarting          int           // pods starting at once per profile, default 20; see wait.go
	// MaxReserved bounds one replica's share of a profile (default 500):
	// each reserved pod holds a prepared stream in this process.
	MaxReserved        int
	PrepareConcurrency int           // default 4
	BackoffBase        time.Duration // default 2s
	BackoffMax         time.Duration // default 2m
	ShrinkAfter        time.Duration // default 10m; see sizer
	Resync             time.Duration // time-based checks, default 1s

	// APIProbe asks the API server whether it can serve (its /readyz);
	// nil disables the check. While it answers unhealthy, claims and
	// creations fail at once; see apiHealth.
	APIProbe        func(context.Context) error
	APIProbeEvery   time.Duration // default 1s
	APIProbeTimeout time.Duration // default 5s

	// Events records why the pool deleted a pod, and which pods showed a
	// profile degraded, as Kubernetes Events on them (podevents.go); nil
	// records nothing.
	Events scheduler.PodEvents
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.LeaderLeaseDuration, 15*time.Second)
	// client-go's own ratios (15s/10s/2s), so that any lease duration
	// gives a valid election configuration.
	def(&o.LeaderRenewDeadline, o.LeaderLeaseDuration*2/3)
	def(&o.LeaderRetryPeriod, o.LeaderLeaseDuration*2/15)
	def(&o.LivenessLeaseDuration, 15*time.Second)
	def(&o.LivenessRenew, o.LivenessLeaseDuration/3)
	def(&o.ValidityMargin, o.LivenessLeaseDuration/5)
	def(&o.ReadyTimeout, 2*time.Minute)
	def(&o.BackoffBase, 2*time.Second)
	def(&o.BackoffMax, 2*time.Minute)
	def(&o.ShrinkAfter, 10*time.Minute)
	def(&o.Resync, time.Second)
	def(&o.APIProbeEvery, time.Second)
	def(&o.APIProbeTimeout, 5*time.Second)
	if o.MaxConcurrentCreates <= 0 {
		o.MaxConcurrentCreates = 10
	}
	if o.PrepareConcurrency <= 0 {
		o.PrepareConcurrency = 4
	}
	if o.MaxStarting <= 0 {
		o.MaxStarting = 20
	}
	if o.MaxReserved <= 0 {
		o.MaxReserved = 500
	}
}

// Index names on the pod informer.
const (
	indexProfile   = "podgate-profile"
	indexIdleReady = "podgate-idle-ready"
	indexStarting  = "podgate-starting"
	indexOwner     = "podgate-owner"
	indexState     = "podgate-state"
	indexUserKey   = "podgate-user-key"
)

// Pool implements scheduler.Pools over one guest namespace.
type Pool struct {
	client kubernetes.Interface
	pods   cache.SharedIndexInformer
	// podsHandled reports whether the pod handlers have seen the initial
	// list: the index (podindex.go) is only complete from then on.
	podsHandled func() bool
	leases      cache.SharedIndexInformer
	profiles    Profiles
	execer      Preparer
	clock       clock.WithTicker
	log         *slog.Logger
	metrics     *metrics
	events      scheduler.PodEvents
	opts        Options
	// run identifies this process among the runs of its replica id.
	run string
	// started is when this pool was made: a pod claimed under this replica
	// id before then, by a podgate that did not record runs, belongs to an
	// earlier process.
	started time.Time

	// ready is closed once caches are synced and the liveness Lease exists;
	// claims wait for it.
	ready chan struct{}
	// wake asks the sync loop for a pass; it holds at most one token.
	wake chan struct{}
	// prepQueue holds names of reserved pods to prepare a stream for.
	prepQueue *workqueue.Typed[string]
	// bg tracks goroutines that outlive a call (creations, deletes,
	// claim records); Run waits for it.
	bg *workGroup

	// The parts, each with its own leaf lock (see the package comment).
	api        apiHealth
	lead       leadership
	live       *liveness
	demand     *demand
	creating   *expectations
	relabeling *expectations
	deleting   *deletions
	index      *podIndex
	claiming   *claiming
	queue      *waitQueue
	reserved   *reservedSet
	kinds      *streamKinds
	abandoned  *abandonedClaims
	parkWaits  *parkWaits
}

var (
	_ scheduler.Pools   = (*Pool)(nil)
	_ scheduler.Parking = (*Pool)(nil)
)

// New returns a pool. pods must be an informer over pods in opts.Namespace
// selected by ManagedSelector, leases one over Leases selected by
// ReplicaSelector; both from a factory cmd starts, and New must be called
// before the factory starts because it adds indexes. execer may be nil.
func New(client kubernetes.Interface, pods, leases cache.SharedIndexInformer, profiles Profiles,
	execer Preparer, clk clock.WithTicker, log *slog.Logger, reg prometheus.Registerer, opts Options,
) (*Pool, error) {
	if opts.Namespace == "" || opts.ReplicaID == "" {
		return nil, errors.New("creating pool: namespace and replica id are required")
	}
	if labelValue(opts.ReplicaID) != opts.ReplicaID {
		return nil, fmt.Errorf("creating pool: replica id %q is not a valid label value", opts.ReplicaID)
	}
	opts.setDefaults()
	if opts.LeaderRenewDeadline >= opts.LeaderLeaseDuration {
		return nil, fmt.Errorf("creating pool: leader renew deadline %v must be shorter than the lease duration %v", opts.LeaderRenewDeadline, opts.LeaderLeaseDuration)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("creating pool: %w", err)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	p := &Pool{
		client: client, pods: pods, leases: leases, profiles: profiles, execer: execer,
		clock: clk, log: log, metrics: m, opts: opts, run: hex.EncodeToString(id[:]), started: clk.Now(),
		events:     scheduler.OrNoPodEvents(opts.Events),
		ready:      make(chan struct{}),
		wake:       make(chan struct{}, 1),
		prepQueue:  workqueue.NewTyped[string](),
		live:       newLiveness(),
		creating:   newExpectations(),
		relabeling: newExpectations(),
		claiming:   newClaiming(),
		queue:      newWaitQueue(),
		reserved:   newReservedSet(),
		bg:         newWorkGroup(),
		kinds:      newStreamKinds(),
		abandoned:  newAbandonedClaims(),
		parkWaits:  newParkWaits(),
	}
	p.demand = newDemand(m, log, &p.opts)
	p.index = newPodIndex(&p.opts)
	p.deleting = newDeletions(p.index)
	if err := m.registerGauges(reg, p.reserved); err != nil {
		return nil, fmt.Errorf("creating pool: %w", err)
	}
	if err := pods.AddIndexers(cache.Indexers{
		indexProfile:   indexByProfile,
		indexIdleReady: indexByIdleReady,
		indexStarting:  indexByStarting,
		indexOwner:     indexByOwner,
		indexState:     indexByState,
		indexUserKey:   indexByUserKey,
	}); err != nil {
		return nil, fmt.Errorf("creating pool: adding pod indexes: %w", err)
	}
	handled, err := pods.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    func(o any, initial bool) { p.onPod(podOf(o), !initial) },
		UpdateFunc: func(_, o any) { p.onPod(podOf(o), true) },
		DeleteFunc: func(o any) { p.onPodDeleted(o) },
	})
	if err != nil {
		return nil, fmt.Errorf("creating pool: watching pods: %w", err)
	}
	p.podsHandled = handled.HasSynced
	return p, nil
}

func indexByProfile(o any) ([]string, error) {
	if pod, ok := o.(*corev1.Pod); ok {
		return []string{pod.Labels[LabelProfile]}, nil
	}
	return nil, nil
}

func indexByIdleReady(o any) ([]string, error) {
	pod, ok := o.(*corev1.Pod)
	if !ok || pod.Labels[LabelState] != StateIdle || !podReady(pod) {
		return nil, nil
	}
	return []string{pod.Labels[LabelProfile]}, nil
}

func indexByStarting(o any) ([]string, error) {
	if pod, ok := o.(*corev1.Pod); ok && podStarting(pod) {
		return []string{pod.Labels[LabelProfile]}, nil
	}
	return nil, nil
}

func indexByOwner(o any) ([]string, error) {
	if pod, ok := o.(*corev1.Pod); ok && pod.Labels[LabelOwner] != "" {
		return []string{pod.Labels[LabelOwner]}, nil
	}
	return nil, nil
}

func indexByState(o any) ([]string, error) {
	if pod, ok := o.(*corev1.Pod); ok {
		return []string{pod.Labels[LabelState]}, nil
	}
	return nil, nil
}

func podOf(o any) *corev1.Pod {
	pod, _ := o.(*corev1.Pod)
	return pod
}

// Run runs the pool until ctx ends: it waits for the caches, keeps the
// liveness Lease, takes part in leader election, and prepares streams. It
// returns after every goroutine it started has finished.
func (p *Pool) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), p.pods.HasSynced, p.podsHandled, p.leases.HasSynced, p.profiles.HasSynced) {
		return fmt.Errorf("waiting for pool caches: %w", ctx.Err())
	}
	if err := p.renewLiveness(ctx); err != nil {
		return fmt.Errorf("creating liveness lease: %w", err)
	}
	close(p.ready)
	p.log.Info("pool ready", "replica", p.opts.ReplicaID, "run", p.run, "namespace", p.opts.Namespace)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.keepLiveness(gctx) })
	g.Go(func() error { return p.elect(gctx) })
	g.Go(func() error { return p.syncLoop(gctx) })
	g.Go(func() error { p.probeAPI(gctx); return nil })
	if p.execer != nil {
		for range p.opts.PrepareConcurrency {
			g.Go(func() error { p.prepareWorker(gctx); return nil })
		}
	}
	g.Go(func() error { <-gctx.Done(); p.prepQueue.ShutDown(); return nil })
	err := g.Wait()
	p.bg.Wait()
	p.returnReserved(p.reserved.takeAll())
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// waitReady blocks until Run has the caches and the liveness Lease.
func (p *Pool) waitReady(ctx context.Context) error {
	select {
	case <-p.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for pool to start: %w", ctx.Err())
	}
}

// poke asks the sync loop for a pass without blocking.
func (p *Pool) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// background runs f off the caller's path; Run waits for it.
func (p *Pool) background(f func()) { p.bg.Go(f) }

// cachedPod returns the informer's copy of a pod; callers must not modify it.
func (p *Pool) cachedPod(name string) (*corev1.Pod, bool) {
	o, ok, err := p.pods.GetStore().GetByKey(p.opts.Namespace + "/" + name)
	if err != nil || !ok {
		return nil, false
	}
	pod, ok := o.(*corev1.Pod)
	return pod, ok
}

// spareOfTemplate counts the cached spare pods (idle or reserved) of a
// profile's current template that are not being deleted.
func (p *Pool) spareOfTemplate(profile, hash string) int {
	objs, _ := p.pods.GetIndexer().ByIndex(indexProfile, profile)
	n := 0
	for _, o := range objs {
		if pod, ok := o.(*corev1.Pod); ok && pod.DeletionTimestamp == nil && Spare(pod) && pod.Labels[LabelHash] == hash {
			n++
		}
	}
	return n
}
