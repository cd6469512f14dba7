package pool

import (
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podgate/podgate/pool/profile"
)

// demand is what the pod events say about each profile: its health (can
// its pods start, and when may the next creation try), its sizer (the idle
// target), and this replica's own logins (its want). Every replica keeps
// one, fed by the same informer, so every replica reaches the same verdicts
// while only the leader acts on them. Its lock is a leaf: nothing is called
// while it is held but the plain-data types and metrics.
type demand struct {
	metrics *metrics
	log     *slog.Logger
	opts    *Options

	// mu protects the maps below and the plain data they hold.
	mu         sync.Mutex
	health     map[string]*health
	sizers     map[string]*sizer
	wants      map[string]*wantTracker
	capacities map[string]*capacityMeter
	// failed remembers pods already counted as a failure; claims and
	// starts are the sizer's observations (see observe); starting counts
	// each profile's entries in starts, for its capacityMeter.
	failed   map[types.UID]struct{}
	claims   map[types.UID]struct{}
	starts   map[types.UID]startTiming
	starting map[string]int
}

// startTiming is a pod being timed from its first sighting to Ready.
type startTiming struct {
	profile string
	at      time.Time
}

func newDemand(m *metrics, log *slog.Logger, opts *Options) *demand {
	return &demand{
		metrics: m, log: log, opts: opts,
		health:     map[string]*health{},
		sizers:     map[string]*sizer{},
		wants:      map[string]*wantTracker{},
		capacities: map[string]*capacityMeter{},
		failed:     map[types.UID]struct{}{},
		claims:     map[types.UID]struct{}{},
		starts:     map[types.UID]startTiming{},
		starting:   map[string]int{},
	}
}

// healthLocked returns the profile's health, reset when its template
// changed.
func (d *demand) healthLocked(prof *profile.Profile) *health {
	h := d.health[prof.Name]
	if h == nil {
		h = &health{}
		d.health[prof.Name] = h
	}
	if h.hash != prof.Hash {
		h.reset(prof.Hash)
	}
	return h
}

// sizerLocked returns the profile's sizer with its current bounds.
func (d *demand) sizerLocked(prof *profile.Profile, now time.Time) *sizer {
	s := d.sizers[prof.Name]
	if s == nil {
		s = newSizer(prof.PoolMin, prof.PoolMax, now)
		d.sizers[prof.Name] = s
	}
	hi := prof.PoolMax
	if prof.NoGrow {
		hi = prof.PoolMin
	}
	s.setBounds(prof.PoolMin, hi)
	return s
}

// capacityLocked returns the profile's capacity meter.
func (d *demand) capacityLocked(profile string) *capacityMeter {
	c := d.capacities[profile]
	if c == nil {
		c = &capacityMeter{}
		d.capacities[profile] = c
	}
	return c
}

// timeStartLocked starts or ends the timing of a pod's start, keeping the
// profile's count of starting pods for its capacity meter.
func (d *demand) timeStartLocked(uid types.UID, t startTiming, timing bool, now time.Time) {
	if timing {
		d.starts[uid] = t
		d.starting[t.profile]++
	} else {
		delete(d.starts, uid)
		if d.starting[t.profile]--; d.starting[t.profile] <= 0 {
			delete(d.starting, t.profile)
		}
	}
	d.capacityLocked(t.profile).setStarting(now, d.starting[t.profile])
}

// observe feeds one event of a pod of the profile's current template: a
// pod that became Ready proves the template; one that cannot start is a
// failure (once per pod); the first sighting of each claim is a hit, or a
// miss for a cold pod; and each pod's start is timed from its first
// sighting to Ready, which also feeds the capacity meter. Pods from the informer's initial list (counted false)
// are old news and count for neither claims nor starts.
func (d *demand) observe(prof *profile.Profile, pod *corev1.Pod, counted bool, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.healthLocked(prof)
	if podReady(pod) {
		h.ready()
		d.metrics.degraded.WithLabelValues(prof.Name).Set(0)
	} else if f, bad := podFailure(pod); bad {
		d.recordFailureLocked(prof, pod, f, now)
	}
	sz := d.sizerLocked(prof, now)
	switch pod.Labels[LabelState] {
	case StateClaimed:
		if _, seen := d.claims[pod.UID]; !seen {
			d.claims[pod.UID] = struct{}{}
			switch {
			case !counted:
			case pod.Annotations[AnnCold] == "true":
				sz.miss(now)
			default:
				sz.hit(now)
			}
		}
	case StateIdle, StateReserved:
		// A cold pod given to the pool may be claimed again.
		delete(d.claims, pod.UID)
	}
	st, timing := d.starts[pod.UID]
	switch {
	case podReady(pod) && timing:
		sz.started(now.Sub(st.at))
		d.capacityLocked(prof.Name).ready(now)
		d.timeStartLocked(pod.UID, st, false, now)
	case timing && (pod.DeletionTimestamp != nil || failing(pod)):
		// It will not start: it holds the node no longer.
		d.timeStartLocked(pod.UID, st, false, now)
	case !podReady(pod) && !timing && counted && pod.DeletionTimestamp == nil && !failing(pod):
		d.timeStartLocked(pod.UID, startTiming{profile: prof.Name, at: now}, true, now)
	}
}

func failing(pod *corev1.Pod) bool {
	_, bad := podFailure(pod)
	return bad
}

// forget drops what observe remembers of a pod that is gone; one that was
// starting no longer is.
func (d *demand) forget(uid types.UID, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.failed, uid)
	delete(d.claims, uid)
	if st, timing := d.starts[uid]; timing {
		d.timeStartLocked(uid, st, false, now)
	}
}

// recordFailure counts a pod that cannot start against its profile's
// health, once per pod however many events or callers report it.
func (d *demand) recordFailure(prof *profile.Profile, pod *corev1.Pod, f failure, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.recordFailureLocked(prof, pod, f, now)
}

func (d *demand) recordFailureLocked(prof *profile.Profile, pod *corev1.Pod, f failure, now time.Time) {
	if _, seen := d.failed[pod.UID]; seen {
		return
	}
	d.failed[pod.UID] = struct{}{}
	d.healthLocked(prof).fail(now, f, d.opts.BackoffBase, d.opts.BackoffMax)
	d.metrics.createFailures.WithLabelValues(prof.Name, f.Reason).Inc()
	d.metrics.degraded.WithLabelValues(prof.Name).Set(1)
	d.log.Warn("pod cannot start", "profile", prof.Name, "pod", pod.Name, "reason", f.Reason, "detail", failureDetail(pod))
}

// createRejected counts a creation the API server refused for the
// profile's sake (admission, quota, an invalid spec).
func (d *demand) createRejected(prof *profile.Profile, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.healthLocked(prof).fail(now, failCreate, d.opts.BackoffBase, d.opts.BackoffMax)
	d.metrics.createFailures.WithLabelValues(prof.Name, ReasonCreate).Inc()
}

// refuseNow returns the failure to refuse a waiting user with at once: the
// profile is known broken and its backoff does not allow a creation yet.
func (d *demand) refuseNow(prof *profile.Profile, now time.Time) (failure, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.healthLocked(prof)
	if h.degraded() && !h.mayCreate(now) {
		return h.last, true
	}
	return failure{}, false
}

// plan is what one sync pass needs to know about a profile's demand.
type plan struct {
	target    int
	degraded  bool
	mayCreate bool
	cautious  bool
	// held: a burst is being served; replacements wait (sizer.holdRefill).
	held bool
}

// tick measures the capacity, finds the scheduled peak due, applies the
// sizer's rules (it grows on the forecast and for the peak, and shrinks
// after a quiet spell), sets the capacity ratio and returns the pass's
// plan.
func (d *demand) tick(prof *profile.Profile, now time.Time) plan {
	d.mu.Lock()
	defer d.mu.Unlock()
	sz := d.sizerLocked(prof, now)
	c := d.capacityLocked(prof.Name).rate(now)
	sz.setCapacity(c)
	sz.setFloor(peakFloor(prof.Peaks, now, sz.startTime(), c))
	sz.tick(now, d.opts.ShrinkAfter)
	if d.metrics != nil {
		d.metrics.capacityRatio.WithLabelValues(prof.Name).Set(capacityRatio(sz.forecast(now)))
	}
	h := d.healthLocked(prof)
	return plan{target: sz.target, degraded: h.degraded(), mayCreate: h.mayCreate(now), cautious: h.cautious(), held: sz.holdRefill(now)}
}

// adopt raises a new leader's target to the idle pods it finds; see
// sizer.adopt.
func (d *demand) adopt(prof *profile.Profile, idle int, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sizerLocked(prof, now).adopt(idle, now)
}

// inherit records a spare pod of the profile that an earlier run of this
// replica had reserved and this process deleted; see sizer.adopt.
func (d *demand) inherit(prof *profile.Profile, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sizerLocked(prof, now).inherit(now)
}

// capacity is the profile's capacity estimate as the last tick measured
// it, in pods per second; 0 when unknown.
func (d *demand) capacity(prof *profile.Profile, now time.Time) float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sizerLocked(prof, now).capacity
}

// login records a login this replica served for the profile, feeding its
// want.
func (d *demand) login(prof *profile.Profile, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.wants[prof.Name]
	if w == nil {
		w = &wantTracker{}
		d.wants[prof.Name] = w
	}
	w.login(now)
}

// want is this replica's want for the profile; see want.go.
func (d *demand) want(prof *profile.Profile, now time.Time) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.wants[prof.Name]
	if w == nil {
		return 1
	}
	return w.want(now, d.sizerLocked(prof, now).startTime())
}
