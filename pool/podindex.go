package pool

import (
	"sync"
	"time"

	"github.com/google/btree"
	corev1 "k8s.io/api/core/v1"
)

// podIndex keeps each profile's pods classified as the sync pass needs
// them, up to date from the pod events, so that a pass costs what it
// decides on (the doomed pods, the pods it deletes or relabels, one count
// per owner and run) instead of a walk over every pod of the pool. Each
// event costs O(log n).
//
// What depends on the pod alone is decided on its event: its class (state,
// owner and run), readiness, whether it is being deleted, and the verdicts
// that need no clock: a template other than the profile's, or a failure
// (podFailure). What depends on more is left to the pass:
//   - lapsed or not depends on the live replicas' runs, which change
//     rarely: the pass decides it once per owner and run (a bucket), not
//     per pod;
//   - the time-based verdicts (ready timeout, max idle age) depend on the
//     clock: each bucket keeps its kept pods ordered by creation, Ready and
//     not Ready apart, so that the pods past either deadline are a prefix
//     of each order and the pass finds them by looking at the oldest pods
//     only, until the first one that is still in time. No per-pod timer is
//     needed, and the verdict is as prompt as the full scan's was.
//
// The index decides against the template hash it was last given; a pass
// that sees another (a new template) reclassifies the profile's pods once.
//
// Its lock is a leaf, but for deletions.mu, which is taken before it.
type podIndex struct {
	mu       sync.Mutex // protect profiles, where and deleting
	profiles map[string]*profilePods
	where    map[string]*indexedPod // by pod name
	deleting map[string]struct{}    // pods this replica is deleting
	// opts is the pool's (ReadyTimeout, MaxIdleAge), read-only once the
	// pool runs.
	opts *Options
}

// profilePods is one profile's pods, by class.
type profilePods struct {
	hash            string // the template hash the classes were decided against
	pods            map[string]*indexedPod
	claimed, parked int
	// buckets hold the spare pods: idle ones under the zero key, reserved
	// ones under their owner and run.
	buckets map[ownerRun]*bucket
}

// ownerRun keys a bucket: the owner and run of reserved pods; the zero
// key is the idle pods'.
type ownerRun struct {
	reserved   bool
	owner, run string
}

// podClass is where a pod counts.
type podClass int

const (
	classNone podClass = iota // being deleted, or in no state the pass counts
	classClaimed
	classParked
	classSpare // idle or reserved: in a bucket
)

type indexedPod struct {
	pod     *corev1.Pod
	profile string
	class   podClass
	key     ownerRun // for classSpare
	ready   bool
	// static is true when the pod is doomed whatever the clock says: a
	// template other than the profile's, or a failure.
	static bool
}

// bucket holds the spare pods of one owner and run (or the idle ones).
type bucket struct {
	ready, notReady int // every pod of the bucket, kept or doomed
	// doomed are the statically doomed pods.
	doomed map[string]*indexedPod
	// warm and live are the other pods, not Ready and Ready, each ordered
	// by creation, then name.
	warm, live *btree.BTreeG[*corev1.Pod]
}

func byCreation(a, b *corev1.Pod) bool {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c < 0
	}
	return a.Name < b.Name
}

func newBucket() *bucket {
	return &bucket{doomed: map[string]*indexedPod{}, warm: btree.NewG(16, byCreation), live: btree.NewG(16, byCreation)}
}

func (b *bucket) empty() bool { return b.ready+b.notReady == 0 }

func newPodIndex(opts *Options) *podIndex {
	return &podIndex{
		profiles: map[string]*profilePods{}, where: map[string]*indexedPod{}, deleting: map[string]struct{}{},
		opts: opts,
	}
}

// observe records an added or updated pod. hash is its profile's current
// template hash as the event handler sees it ("" when unknown); it only
// seeds a profile the index has not seen.
func (x *podIndex) observe(pod *corev1.Pod, hash string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	name := pod.Labels[LabelProfile]
	if e := x.where[pod.Name]; e != nil {
		x.unplaceLocked(e)
		if e.profile != name {
			x.dropLocked(e)
		}
	}
	pp := x.profiles[name]
	if pp == nil {
		pp = &profilePods{hash: hash, pods: map[string]*indexedPod{}, buckets: map[ownerRun]*bucket{}}
		x.profiles[name] = pp
	}
	e := &indexedPod{pod: pod, profile: name}
	x.where[pod.Name] = e
	pp.pods[pod.Name] = e
	x.placeLocked(pp, e)
}

// forget drops a deleted pod.
func (x *podIndex) forget(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e := x.where[name]; e != nil {
		x.unplaceLocked(e)
		x.dropLocked(e)
	}
}

// dropLocked removes an unplaced pod from its profile.
func (x *podIndex) dropLocked(e *indexedPod) {
	delete(x.where, e.pod.Name)
	pp := x.profiles[e.profile]
	delete(pp.pods, e.pod.Name)
	if len(pp.pods) == 0 {
		delete(x.profiles, e.profile)
	}
}

// setDeleting marks or unmarks a pod this replica is deleting: the pass
// counts it nowhere while it is marked.
func (x *podIndex) setDeleting(name string, deleting bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if deleting {
		x.deleting[name] = struct{}{}
	} else {
		delete(x.deleting, name)
	}
	if e := x.where[name]; e != nil {
		x.unplaceLocked(e)
		x.placeLocked(x.profiles[e.profile], e)
	}
}

// placeLocked classifies e and counts it where it belongs.
func (x *podIndex) placeLocked(pp *profilePods, e *indexedPod) {
	pod := e.pod
	_, deleting := x.deleting[pod.Name]
	state := pod.Labels[LabelState]
	e.class = classNone
	switch {
	case pod.DeletionTimestamp != nil || deleting:
		return
	case state == StateClaimed:
		e.class = classClaimed
		pp.claimed++
		return
	case state == StateParked:
		e.class = classParked
		pp.parked++
		return
	case state == StateIdle:
		e.key = ownerRun{}
	case state == StateReserved:
		e.key = ownerRun{true, pod.Labels[LabelOwner], pod.Labels[LabelRun]}
	default:
		return
	}
	e.class = classSpare
	e.ready = podReady(pod)
	_, failed := podFailure(pod)
	e.static = failed || pod.Labels[LabelHash] != pp.hash
	b := pp.buckets[e.key]
	if b == nil {
		b = newBucket()
		pp.buckets[e.key] = b
	}
	switch {
	case e.ready:
		b.ready++
	default:
		b.notReady++
	}
	switch {
	case e.static:
		b.doomed[pod.Name] = e
	case e.ready:
		b.live.ReplaceOrInsert(pod)
	default:
		b.warm.ReplaceOrInsert(pod)
	}
}

// unplaceLocked undoes placeLocked.
func (x *podIndex) unplaceLocked(e *indexedPod) {
	pp := x.profiles[e.profile]
	switch e.class {
	case classClaimed:
		pp.claimed--
	case classParked:
		pp.parked--
	case classSpare:
		b := pp.buckets[e.key]
		switch {
		case e.ready:
			b.ready--
		default:
			b.notReady--
		}
		switch {
		case e.static:
			delete(b.doomed, e.pod.Name)
		case e.ready:
			b.live.Delete(e.pod)
		default:
			b.warm.Delete(e.pod)
		}
		if b.empty() {
			delete(pp.buckets, e.key)
		}
	}
	e.class = classNone
}

// rehashLocked reclassifies a profile's pods against a new template hash.
func (x *podIndex) rehashLocked(pp *profilePods, hash string) {
	for _, e := range pp.pods {
		x.unplaceLocked(e)
	}
	pp.hash = hash
	for _, e := range pp.pods {
		x.placeLocked(pp, e)
	}
}

// timeDoomed is the clock's part of doomedBecause: a spare pod not Ready
// past the ready timeout, or older than the max idle age. It only grows
// with a pod's age, which is why the doomed pods are a prefix of an order
// by creation.
func (x *podIndex) timeDoomed(pod *corev1.Pod, ready bool, now time.Time) bool {
	age := now.Sub(pod.CreationTimestamp.Time)
	return (!ready && age > x.opts.ReadyTimeout) || (x.opts.MaxIdleAge > 0 && age > x.opts.MaxIdleAge)
}
