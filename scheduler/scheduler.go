package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// Options tune a Scheduler. Zero values take the defaults noted.
type Options struct {
	// Parking keeps connection-mode pods for reconnects in the cluster
	// (reconnect.go); nil releases every pod when its connection closes.
	Parking Parking
	// MaxReconnectWindow bounds every profile's reconnect window (the
	// operator's PODGATE_MAX_RECONNECT_WINDOW); zero leaves them as they
	// are.
	MaxReconnectWindow time.Duration
	// ProgressEvery is how often a waiting user is told how long they
	// have waited. Default 1s.
	ProgressEvery time.Duration
	// MaxWaiting bounds the logins waiting for a cold pod at once, over
	// all profiles; a login that would wait beyond it is refused at once
	// with ErrAtCapacity, so a burst cannot pile up goroutines and pod
	// creations. Zero means no bound; a negative value lets no login wait.
	MaxWaiting int
	// Events records what happens to each login's pod as Kubernetes
	// Events on it (events.go); nil records nothing.
	Events PodEvents
}

// Scheduler turns authenticated connections into attachments: it enforces
// the profile's access and limits, claims warm pods or creates cold ones
// through Pools, runs processes through an Execer, and parks connection-mode
// pods for their profile's reconnect window through Parking.
type Scheduler struct {
	pools   Pools
	execer  Execer
	clock   clock.WithTicker
	log     *slog.Logger
	metrics *metrics
	events  PodEvents
	parking Parking // nil: no reconnects
	opts    Options
	// parks are the parks of this replica in flight, which a reconnect
	// waits for (parkflight.go).
	parks *parksInFlight

	// bg tracks releases running off the critical path; Run waits for it.
	bg sync.WaitGroup

	// mu protects the following. It is a leaf: nothing is called while
	// it is held.
	mu           sync.Mutex
	shuttingDown bool
	// perProfile counts connections per profile, perUser the pods this
	// replica holds per user and profile (UserKey), claims in flight
	// included: in connection mode one connection holds one pod, in
	// session mode every running session holds its own.
	perProfile map[string]int
	perUser    map[string]int
	// waiters lists, per profile, the tickets of connections waiting
	// for a cold pod, for queue positions.
	waiters map[string][]uint64
	nWait   int // waiters over all profiles
	ticket  uint64
}

// New returns a scheduler. It registers its metrics on reg.
func New(pools Pools, execer Execer, clk clock.WithTicker, log *slog.Logger, reg prometheus.Registerer, opts Options) (*Scheduler, error) {
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = time.Second
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("creating scheduler: %w", err)
	}
	return &Scheduler{
		pools: pools, execer: execer, clock: clk, log: log, metrics: m, opts: opts,
		events:     OrNoPodEvents(opts.Events),
		parking:    opts.Parking,
		parks:      newParksInFlight(),
		perProfile: map[string]int{},
		perUser:    map[string]int{},
		waiters:    map[string][]uint64{},
	}, nil
}

// Run waits until ctx ends, then shuts down: new Attaches fail with
// ErrShuttingDown, and Run returns once every background release has
// finished. Parked pods stay parked: they live in the cluster, for the
// user's reconnect through another replica or this one restarted.
// Attachments still open park or release their pods on Close as usual.
func (s *Scheduler) Run(ctx context.Context) error {
	<-ctx.Done()
	s.mu.Lock()
	s.shuttingDown = true
	s.mu.Unlock()
	s.bg.Wait()
	return nil
}

// Attach gives an authenticated connection its attachment; see
// Attachment. In connection mode it returns once the pod is Ready (a parked
// pod of the same identity, a warm one, or a cold one it waited for);
// in session mode it returns at once.
func (s *Scheduler) Attach(ctx context.Context, id Identity, progress Progress) (Attachment, error) {
	a, err := s.attach(ctx, id, progress)
	if err != nil {
		name, mode := id.Profile, ModeConnection
		if pol, perr := s.pools.Policy(id.Profile); perr == nil {
			name, mode = pol.Name, pol.Mode
		}
		s.metrics.attach.WithLabelValues(name, string(mode), "failed").Observe(s.since(id.AcceptedAt))
		s.log.Info("attach refused", "user", id.User, "profile", id.Profile, "conn", id.ConnID, "err", err)
		return nil, err
	}
	return a, nil
}

func (s *Scheduler) attach(ctx context.Context, id Identity, progress Progress) (Attachment, error) {
	if s.isShuttingDown() {
		return nil, ErrShuttingDown
	}
	pol, err := s.pools.Policy(id.Profile)
	if err != nil {
		return nil, err
	}
	if !pol.Allows(id.User) {
		return nil, fmt.Errorf("user %q, profile %q: %w", id.User, pol.Name, ErrProfileNotAllowed)
	}
	if id.ProfileFromLogin && !pol.UserSelectable {
		return nil, fmt.Errorf("user %q chose profile %q by login name, which it does not allow: %w", id.User, pol.Name, ErrProfileNotAllowed)
	}
	doneConn, err := s.admitConn(pol)
	if err != nil {
		return nil, err
	}
	if pol.Mode == ModeSession {
		// Each session takes its pod slot when it runs.
		return newSessionAttachment(s, id, pol, progress, doneConn), nil
	}
	key := UserKey(id.User, pol.Name)
	trace := &apiTrace{}
	// A parked pod is taken back before the limit is checked: it is
	// already counted against it, and taking it adds nothing.
	pod, res := s.unpark(withAPITrace(ctx, trace), id, pol, key)
	if pod != nil {
		s.log.Info("reconnected to parked pod", "user", id.User, "profile", pol.Name, "pod", pod.Ref.Name, "conn", id.ConnID)
		// No connection id: a pod parked and taken back again records
		// a series of one Event (client-go folds repeats regardless of
		// their notes), so the note must hold for every repeat.
		s.podEvent(pod, EventReconnected, fmt.Sprintf("user %q reconnected", id.User))
		s.tell(progress, ReconnectMessage(ReconnectSamePod, s.window(pol)))
		donePod := s.takePod(key)
		a := newConnAttachment(s, id, pol, pod, key, "warm", trace, func() { donePod(); doneConn() })
		a.reconnect = ReconnectSamePod
		return a, nil
	}
	donePod, err := s.admitPod(pol, id, key)
	if err != nil {
		doneConn()
		return nil, err
	}
	done := func() { donePod(); doneConn() }
	claim := Claim{Identity: id, UserKey: key, Session: id.ConnID}
	pod, err = s.obtain(withAPITrace(ctx, trace), pol, claim, progress)
	if err != nil {
		done()
		return nil, err
	}
	result := claimResult(pod)
	s.claimed(pod, claim, result)
	if w := s.window(pol); w > 0 {
		if res != ReconnectNone {
			s.log.Info("reconnect got a new pod", "user", id.User, "profile", pol.Name, "pod", pod.Ref.Name, "conn", id.ConnID, "old_pod", res)
		}
		s.tell(progress, ReconnectMessage(res, w))
	}
	a := newConnAttachment(s, id, pol, pod, key, result, trace, done)
	a.reconnect = res
	return a, nil
}

// tell shows the user a line through progress, if there is one.
func (s *Scheduler) tell(progress Progress, msg string) {
	if progress != nil {
		progress(msg)
	}
}

func (s *Scheduler) isShuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shuttingDown
}

// admitConn takes a connection slot under the profile's limit, or fails
// with ErrAtCapacity at once. The returned func gives the slot back; it is
// safe to call more than once.
func (s *Scheduler) admitConn(pol Policy) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pol.MaxConnections > 0 && s.perProfile[pol.Name] >= pol.MaxConnections {
		return nil, fmt.Errorf("profile %q has %d connections: %w", pol.Name, pol.MaxConnections, ErrAtCapacity)
	}
	return s.takeLocked(s.perProfile, pol.Name), nil
}

// admitPod takes a pod slot under the user's limit in the profile, or
// fails with ErrAtCapacity at once; see admitConn.
//
// The limit is counted over every replica: the pods this replica holds
// (perUser, its claims in flight included, so its own logins never race
// each other) plus those its informer cache shows under the key and this
// replica does not hold (parked ones, and other replicas' claims). The
// cache lags the API server by a watch round trip, so replicas admitting
// the same user within that lag of each other do not see each other's
// claims. The bound: with R replicas, a user who holds c pods that every
// cache shows holds at most c + R·(limit − c) pods, an overshoot of at
// most (R−1)·(limit − c) ≤ (R−1)·limit, lasting until those claims reach
// the caches (then no replica admits the user again until they are under
// the limit). Logins through one replica never overshoot.
func (s *Scheduler) admitPod(pol Policy, id Identity, key string) (func(), error) {
	elsewhere := 0
	if s.parking != nil && pol.MaxPerUser > 0 {
		elsewhere = s.parking.UserPods(key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if held := s.perUser[key] + elsewhere; pol.MaxPerUser > 0 && held >= pol.MaxPerUser {
		return nil, &Refusal{
			Err:    fmt.Errorf("user %q holds %d pods of profile %q (%d through this replica), the limit is %d: %w", id.User, held, pol.Name, s.perUser[key], pol.MaxPerUser, ErrAtCapacity),
			Reason: fmt.Sprintf("you already have as many pods as one user may hold at once (%d); close a session and try again", pol.MaxPerUser),
		}
	}
	return s.takeLocked(s.perUser, key), nil
}

// takePod counts a pod under key that needs no admission (a parked pod
// taken back: it was counted already) and returns the func that gives it
// back.
func (s *Scheduler) takePod(key string) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.takeLocked(s.perUser, key)
}

// heldHere is how many pods this replica holds under key.
func (s *Scheduler) heldHere(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perUser[key]
}

// takeLocked counts one more under key in counts (perProfile or perUser)
// and returns the func that gives it back, once however often it is
// called.
func (s *Scheduler) takeLocked(counts map[string]int, key string) func() {
	counts[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if counts[key]--; counts[key] <= 0 {
				delete(counts, key)
			}
		})
	}
}

// obtain claims a warm pod or, on a miss, waits for one, telling the user
// their place, an estimate of the wait and the elapsed time every
// ProgressEvery (WaitMessage). A profile whose
// MaxWait is zero refuses a miss at once.
func (s *Scheduler) obtain(ctx context.Context, pol Policy, c Claim, progress Progress) (*Pod, error) {
	start := s.clock.Now()
	defer func() { s.metrics.phase.WithLabelValues("claim").Observe(s.clock.Since(start).Seconds()) }()
	pod, err := s.pools.Claim(ctx, pol.Name, c)
	if err == nil {
		return pod, nil
	}
	if !errors.Is(err, ErrNoIdlePod) {
		return nil, err
	}
	if pol.MaxWait <= 0 {
		// A zero wait means what it says: no idle pod, no pod.
		return nil, fmt.Errorf("profile %q has no idle pod and a max wait of 0s: %w", pol.Name, ErrAtCapacity)
	}
	t, ok := s.enqueue(pol.Name)
	if !ok {
		return nil, fmt.Errorf("profile %q: %d logins already waiting for a pod: %w", pol.Name, max(s.opts.MaxWaiting, 0), ErrAtCapacity)
	}
	defer s.dequeue(pol.Name, t)
	var (
		mu sync.Mutex
		// state is the pool's latest word; its Position, when set,
		// wins over this scheduler's own count of waiters.
		state = WaitState{Phase: "starting"}
	)
	say := func() {
		if progress == nil {
			return
		}
		mu.Lock()
		st := state
		mu.Unlock()
		if st.Position <= 0 {
			st.Position = s.position(pol.Name, t)
		}
		progress(WaitMessage(st.Position, st.Wait, st.Phase, s.clock.Since(start)))
	}
	stop := make(chan struct{})
	ticking := make(chan struct{})
	go func() {
		defer close(ticking)
		tk := s.clock.NewTicker(s.opts.ProgressEvery)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C():
				say()
			}
		}
	}()
	say()
	pod, err = s.pools.AwaitPod(ctx, pol.Name, c, func(w WaitState) {
		mu.Lock()
		state = w
		mu.Unlock()
	})
	close(stop)
	<-ticking
	if err != nil {
		if ctx.Err() != nil && s.isShuttingDown() {
			return nil, fmt.Errorf("%w: %w", ErrShuttingDown, err)
		}
		return nil, err
	}
	return pod, nil
}

// enqueue and dequeue track waiters for queue positions. enqueue reports
// false, and queues nothing, when MaxWaiting logins already wait.
func (s *Scheduler) enqueue(profile string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.opts.MaxWaiting; m < 0 || m > 0 && s.nWait >= m {
		return 0, false
	}
	s.nWait++
	s.ticket++
	s.waiters[profile] = append(s.waiters[profile], s.ticket)
	return s.ticket, true
}

func (s *Scheduler) dequeue(profile string, t uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.waiters[profile]
	for i, x := range w {
		if x == t {
			s.waiters[profile] = append(w[:i:i], w[i+1:]...)
			s.nWait--
			break
		}
	}
	if len(s.waiters[profile]) == 0 {
		delete(s.waiters, profile)
	}
}

// position is 1 + the number of waiters for the profile ahead of t.
func (s *Scheduler) position(profile string, t uint64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 1
	for _, x := range s.waiters[profile] {
		if x < t {
			n++
		}
	}
	return n
}

// claimResult is warm or cold, for metrics and events.
func claimResult(pod *Pod) string {
	if pod.Warm {
		return "warm"
	}
	return "cold"
}

// claimed records who a pod was just handed to. The recorder returns at
// once; the Event is written after the login, in the background.
func (s *Scheduler) claimed(pod *Pod, c Claim, result string) {
	s.podEvent(pod, EventClaimed, fmt.Sprintf("claimed for user %q, connection %s (%s)", c.Identity.User, c.Session, result))
}

// podEvent records an Event on pod.
func (s *Scheduler) podEvent(pod *Pod, reason EventReason, note string) {
	s.events.PodEvent(pod.Ref, pod.UID, reason, note)
}

// release deletes a pod off the critical path; why ends the sentence
// "released: ..." of the pod's Event.
func (s *Scheduler) release(pod *Pod, why string) {
	s.podEvent(pod, EventReleased, why)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.pools.Release(ctx, pod); err != nil {
			s.log.Warn("releasing pod", "pod", pod.Ref.Name, "err", err)
		}
	}()
}

// since returns seconds since t, or 0 when t is unset.
func (s *Scheduler) since(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return s.clock.Since(t).Seconds()
}
