// Package pool keeps warm pods for every profile and hands them out. It is
// domain logic fed by informers: one label-scoped pod informer shows every
// managed pod, claims are optimistic-concurrency PATCHes (one API write on
// the warm path), and only the replica holding the podgate-pool-leader Lease
// creates idle pods and reaps orphans, so several replicas never overshoot.
// Every replica renews a liveness Lease of its own; the leader deletes the
// claimed pods of replicas whose Lease expired, never those of a live one.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
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

	ReadyTimeout         time.Duration // not Ready by then: deleted (default 2m)
	MaxIdleAge           time.Duration // idle pods older are replaced; 0 keeps them forever
	MaxConcurrentCreates int           // default 10
	MaxStarting          int           // pods starting at once per profile, default 20; see starting.go
	PrepareConcurrency   int           // default 4
	BackoffBase          time.Duration // default 2s
	BackoffMax           time.Duration // default 2m
	ShrinkAfter          time.Duration // default 10m; see sizer
	Resync               time.Duration // time-based checks, default 1s

	// APIProbe asks the API server whether it can serve (its /readyz);
	// nil disables the check. While it answers unhealthy, claims and
	// creations fail at once; see apiHealth.
	APIProbe        func(context.Context) error
	APIProbeEvery   time.Duration // default 1s
	APIProbeTimeout time.Duration // default 5s
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
}

// Index names on the pod informer.
const (
	indexProfile   = "podgate-profile"
	indexIdleReady = "podgate-idle-ready"
)

// Pool implements scheduler.Pools over one guest namespace.
type Pool struct {
	client   kubernetes.Interface
	pods     cache.SharedIndexInformer
	leases   cache.SharedIndexInformer
	profiles Profiles
	execer   Preparer
	clock    clock.WithTicker
	log      *slog.Logger
	metrics  *metrics
	opts     Options
	api      apiHealth
	// started is when this pool was made: pods claimed under this replica
	// id before then belong to an earlier process of the same replica (a
	// restart), which can no longer release them.
	started time.Time

	// ready is closed once caches are synced and the liveness Lease exists;
	// claims wait for it.
	ready chan struct{}
	// wake asks the sync loop for a pass; it holds at most one token.
	wake chan struct{}
	// prepQueue holds names of idle pods to prepare streams for.
	prepQueue *workqueue.Typed[string]
	// bg tracks goroutines that outlive a call (creations, deletes).
	bg sync.WaitGroup

	// mu protects the following. It is never held during API calls.
	mu sync.Mutex
	// leadCtx is the current leadership term's context, nil when another
	// replica leads; creations and deletes by the leader use it.
	leadCtx context.Context
	// deleting holds pods the leader asked to delete, until they leave the
	// cache, so that repeated passes do not repeat the call.
	deleting map[string]struct{}
	// taken holds pods this replica is claiming or has claimed, until the
	// informer shows them no longer idle, so local claimers never race
	// each other for one pod. The value records how far the claim and
	// the watch have got; see claimProgress.
	taken map[string]claimProgress
	// pending counts, per profile, idle pods being created (or created
	// but not yet in the cache), keyed by pod name once known.
	pending map[string]map[string]time.Time
	// creating counts in-flight create calls per profile.
	creating map[string]int
	// waiters wake cold-pod waiters when their pod changes.
	waiters map[string]chan struct{}
	// idleReady holds, per profile, the channel closed when an idle pod
	// turns Ready; see idleReadySignal.
	idleReady map[string]chan struct{}
	// coldQueue lists, per profile, the users waiting in Create, oldest
	// first, by their cold pod's name or, until they have one, a key of
	// their own (podlessSeq numbers those), so that handoffs and start
	// slots go to the longest waiters.
	coldQueue  map[string][]string
	podlessSeq uint64
	// coldUnseen counts, per profile, waiters' pods being created or not
	// yet in the cache; see startingLocked.
	coldUnseen map[string]int
	// recycled holds when each cold pod given to the pool by a handoff was
	// created, so that its start is still measured when it turns Ready.
	recycled map[string]time.Time
	// prepared holds streams opened for idle pods, by pod name.
	prepared map[string]*streams
	health   map[string]*health
	sizers   map[string]*sizer
	// failedUIDs remembers pods already counted as a failure; claimUIDs
	// and startSeen are the demand observations (see observeDemandLocked).
	failedUIDs map[string]struct{}
	claimUIDs  map[types.UID]struct{}
	startSeen  map[types.UID]time.Time
	// abandoned holds claims of unknown outcome by pod name; see
	// settleAbandoned.
	abandoned map[string]abandonedClaim
}

var _ scheduler.Pools = (*Pool)(nil)

// streams are the prepared exec streams of one idle pod.
type streams struct {
	uid        string
	tty, plain scheduler.Prepared
}

// open reports whether s holds at least one open stream; a nil s, or a
// placeholder for streams still opening, holds none.
func (s *streams) open() bool { return s != nil && (s.tty != nil || s.plain != nil) }

func (s *streams) close() {
	if s.tty != nil {
		_ = s.tty.Close()
	}
	if s.plain != nil {
		_ = s.plain.Close()
	}
}

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
	p := &Pool{
		client: client, pods: pods, leases: leases, profiles: profiles, execer: execer,
		clock: clk, log: log, metrics: m, opts: opts, started: clk.Now(),
		ready:      make(chan struct{}),
		wake:       make(chan struct{}, 1),
		prepQueue:  workqueue.NewTyped[string](),
		taken:      map[string]claimProgress{},
		pending:    map[string]map[string]time.Time{},
		creating:   map[string]int{},
		waiters:    map[string]chan struct{}{},
		idleReady:  map[string]chan struct{}{},
		coldQueue:  map[string][]string{},
		coldUnseen: map[string]int{},
		recycled:   map[string]time.Time{},
		deleting:   map[string]struct{}{},
		prepared:   map[string]*streams{},
		health:     map[string]*health{},
		sizers:     map[string]*sizer{},
		failedUIDs: map[string]struct{}{},
		claimUIDs:  map[types.UID]struct{}{},
		startSeen:  map[types.UID]time.Time{},
		abandoned:  map[string]abandonedClaim{},
	}
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "podgate_pool_prepared_pods",
		Help: "Idle pods whose exec streams are open and waiting, so that claiming one attaches with no new exec.",
	}, p.preparedCount)); err != nil {
		return nil, fmt.Errorf("creating pool: registering metrics: %w", err)
	}
	if err := pods.AddIndexers(cache.Indexers{
		indexProfile:   indexByProfile,
		indexIdleReady: indexByIdleReady,
	}); err != nil {
		return nil, fmt.Errorf("creating pool: adding pod indexes: %w", err)
	}
	if _, err := pods.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    func(o any, initial bool) { p.onPod(podOf(o), !initial) },
		UpdateFunc: func(_, o any) { p.onPod(podOf(o), true) },
		DeleteFunc: func(o any) { p.onPodDeleted(o) },
	}); err != nil {
		return nil, fmt.Errorf("creating pool: watching pods: %w", err)
	}
	return p, nil
}

func indexByProfile(o any) ([]string, error) {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	return []string{pod.Labels[LabelProfile]}, nil
}

func indexByIdleReady(o any) ([]string, error) {
	pod, ok := o.(*corev1.Pod)
	if !ok || pod.Labels[LabelState] != StateIdle || !podReady(pod) {
		return nil, nil
	}
	return []string{pod.Labels[LabelProfile]}, nil
}

func podOf(o any) *corev1.Pod {
	pod, _ := o.(*corev1.Pod)
	return pod
}

// Run runs the pool until ctx ends: it waits for the caches, keeps the
// liveness Lease, takes part in leader election, and prepares streams. It
// returns after every goroutine it started has finished.
func (p *Pool) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), p.pods.HasSynced, p.leases.HasSynced, p.profiles.HasSynced) {
		return fmt.Errorf("waiting for pool caches: %w", ctx.Err())
	}
	lease, err := p.renewLiveness(ctx, nil)
	if err != nil {
		return fmt.Errorf("creating liveness lease: %w", err)
	}
	close(p.ready)
	p.log.Info("pool ready", "replica", p.opts.ReplicaID, "namespace", p.opts.Namespace)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.keepLiveness(gctx, lease) })
	g.Go(func() error { return p.elect(gctx) })
	g.Go(func() error { return p.syncLoop(gctx) })
	g.Go(func() error { p.probeAPI(gctx); return nil })
	if p.execer != nil {
		for range p.opts.PrepareConcurrency {
			g.Go(func() error { p.prepareWorker(gctx); return nil })
		}
		g.Go(func() error { <-gctx.Done(); p.prepQueue.ShutDown(); return nil })
	}
	err = g.Wait()
	p.bg.Wait()
	p.closeAllStreams()
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

// onPod reacts to an added or updated pod: it releases local reservations,
// wakes waiters, tracks health and misses, and queues stream preparation.
// counted is false for pods from the informer's initial list, which are not
// new misses.
func (p *Pool) onPod(pod *corev1.Pod, counted bool) {
	if pod == nil {
		return
	}
	state := pod.Labels[LabelState]
	prof, _ := p.profiles.Get(pod.Labels[LabelProfile])
	now := p.clock.Now()
	var toClose *streams
	p.mu.Lock()
	if state != StateIdle {
		// The watch often delivers this replica's own claim before the
		// PATCH response reaches claimIdle: the pod then stays taken and
		// keeps its streams for claimed to hand over, however many
		// events arrive meanwhile. Closing them here sent every other
		// user through a fresh exec, 60-90 ms slower on this node.
		if pr, ok := p.taken[pod.Name]; ok && pr != claimWon && pod.Labels[LabelOwner] == p.opts.ReplicaID {
			p.taken[pod.Name] = claimSeen
		} else {
			delete(p.taken, pod.Name)
			toClose = p.dropStreamsLocked(pod.Name)
		}
	}
	if set := p.pending[pod.Labels[LabelProfile]]; set != nil {
		delete(set, pod.Name)
	}
	if ch, ok := p.waiters[pod.Name]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	if prof.Profile != nil && pod.Labels[LabelHash] == prof.Profile.Hash {
		h := p.healthLocked(prof.Profile)
		if podReady(pod) {
			h.ready()
			p.metrics.degraded.WithLabelValues(prof.Name).Set(0)
		} else if f, bad := podFailure(pod); bad {
			p.recordFailureLocked(prof.Profile, pod, f, now)
		}
		p.observeDemandLocked(prof.Profile, pod, counted, now)
	}
	if at, ok := p.recycled[pod.Name]; ok && podReady(pod) && prof.Profile != nil {
		delete(p.recycled, pod.Name)
		p.metrics.podStart.WithLabelValues(prof.Name).Observe(now.Sub(at).Seconds())
	}
	current := state == StateIdle && podReady(pod) && prof.Profile != nil && pod.Labels[LabelHash] == prof.Profile.Hash
	if current {
		p.signalIdleReadyLocked(prof.Name)
	} else {
		p.signalSlotLocked(pod, false)
	}
	wantPrep := p.execer != nil && current && p.prepared[pod.Name] == nil
	p.mu.Unlock()
	if toClose != nil {
		toClose.close()
	}
	if wantPrep {
		p.prepQueue.Add(pod.Name)
	}
	p.poke()
}

// onPodDeleted forgets everything about a deleted pod.
func (p *Pool) onPodDeleted(o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	pod := podOf(o)
	if pod == nil {
		return
	}
	p.mu.Lock()
	delete(p.taken, pod.Name)
	delete(p.deleting, pod.Name)
	delete(p.failedUIDs, string(pod.UID))
	p.forgetDemandLocked(pod.UID)
	delete(p.recycled, pod.Name)
	toClose := p.dropStreamsLocked(pod.Name)
	if ch, ok := p.waiters[pod.Name]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	p.signalSlotLocked(pod, true)
	p.mu.Unlock()
	if toClose != nil {
		toClose.close()
	}
	p.poke()
}

// healthLocked returns the profile's health, reset when its template
// changed.
func (p *Pool) healthLocked(prof *profile.Profile) *health {
	h := p.health[prof.Name]
	if h == nil {
		h = &health{}
		p.health[prof.Name] = h
	}
	if h.hash != prof.Hash {
		h.reset(prof.Hash)
	}
	return h
}

// recordFailureLocked counts a pod that cannot start against its profile's
// health, once per pod however many events or callers report it.
func (p *Pool) recordFailureLocked(prof *profile.Profile, pod *corev1.Pod, f failure, now time.Time) {
	if _, seen := p.failedUIDs[string(pod.UID)]; seen {
		return
	}
	p.failedUIDs[string(pod.UID)] = struct{}{}
	p.healthLocked(prof).fail(now, f, p.opts.BackoffBase, p.opts.BackoffMax)
	p.metrics.createFailures.WithLabelValues(prof.Name, f.Reason).Inc()
	p.metrics.degraded.WithLabelValues(prof.Name).Set(1)
	p.log.Warn("pod cannot start", "profile", prof.Name, "pod", pod.Name, "reason", f.Reason, "detail", failureDetail(pod))
}

// cachedPod returns the informer's copy of a pod; callers must not modify it.
func (p *Pool) cachedPod(name string) (*corev1.Pod, bool) {
	o, ok, err := p.pods.GetStore().GetByKey(p.opts.Namespace + "/" + name)
	if err != nil || !ok {
		return nil, false
	}
	pod, ok := o.(*corev1.Pod)
	return pod, ok
}
