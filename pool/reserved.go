package pool

import (
	"container/list"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/podgate/podgate/scheduler"
)

// The reserved set: this run's reserved pods, as their owner sees them, and
// the exec stream prepared into each.
//
// Isolation invariant, part 1 (see also record.go and reap.go): a reserved
// pod is handed to at most one user, and only by the run that reserved it.
// The set holds only pods whose labels name this replica and whose AnnRun
// names this run (observe); a pod leaves the set exactly once, under its
// lock, by whoever takes it out: a hand-out, a give-back, the sync deleting
// it, or an event showing the pod is no longer this run's. Whoever took it
// owns it from then on, so no two of them ever act on the same pod. A pod
// this run let go of (hand-out, give-back, deletion) never comes back into
// the set on an event that still shows it reserved for this run: such an
// event is older than the write that lets it go (a status update, a
// resync, an add delivered late), and re-adding the pod would hand it to a
// second user while the first user's claim record is in flight. Only an
// event showing the pod is no longer this run's, or its deletion, ends
// that. A pod of another run of this replica id is never added: an earlier
// process may have given it to a user before it died.

// reservedState is where one of this run's reserved pods is.
type reservedState int

const (
	// resWarming: reserved, not yet Ready.
	resWarming reservedState = iota
	// resPreparing: Ready; a worker is opening its stream (or will).
	resPreparing
	// resPrepared: Ready, with an open stream of the kind its profile's
	// logins open first.
	resPrepared
	// resBare: Ready without a stream (its preparation failed, or there
	// is no execer); handed out after the prepared ones, for a fresh exec.
	resBare
	numReservedStates
)

// reservedPod is one entry of the set.
type reservedPod struct {
	name, profile string
	uid           types.UID
	state         reservedState
	// stream is set in resPrepared only; whoever takes the pod out of
	// the set runs or closes it.
	stream scheduler.Prepared
	// since is when the pod entered the set (its reservation, as far as
	// this run knows), for the readiness timeout.
	since time.Time
	elem  *list.Element // in its profile's list for its state
}

// reservedSet is the set. Its lock is a leaf.
type reservedSet struct {
	// mu protects everything below and every reservedPod in it.
	mu   sync.Mutex
	pods map[string]*reservedPod
	// lists holds, per profile, the pods in each state, oldest first, so
	// that a hand-out is O(1) and takes the longest-prepared pod.
	lists map[string]*[numReservedStates]list.List
	// surplusSince is, per profile, when the set first held more pods
	// than the published share, for the give-back's hysteresis.
	surplusSince map[string]time.Time
	// letGo holds the pods this run took out of the set to act on
	// (letGoLocked), by name, with their uid, until an event shows them
	// no longer this run's reserved pods or deleted; observe ignores
	// events that still show them reserved for this run.
	letGo map[string]types.UID
}

func newReservedSet() *reservedSet {
	return &reservedSet{
		pods:         map[string]*reservedPod{},
		lists:        map[string]*[numReservedStates]list.List{},
		surplusSince: map[string]time.Time{},
		letGo:        map[string]types.UID{},
	}
}

// moveLocked puts rp in state s, at the back of that state's list.
func (s *reservedSet) moveLocked(rp *reservedPod, st reservedState) {
	ls := s.lists[rp.profile]
	if ls == nil {
		ls = &[numReservedStates]list.List{}
		s.lists[rp.profile] = ls
	}
	if rp.elem != nil {
		ls[rp.state].Remove(rp.elem)
	}
	rp.state = st
	rp.elem = ls[st].PushBack(rp)
}

// takeLocked removes rp from the set; the caller owns it from then on.
func (s *reservedSet) takeLocked(rp *reservedPod) *reservedPod {
	s.lists[rp.profile][rp.state].Remove(rp.elem)
	rp.elem = nil
	delete(s.pods, rp.name)
	return rp
}

// letGoLocked removes rp from the set for the caller to act on (hand it
// out, give it back, delete it), and keeps stale events from adding it
// again; see letGo.
func (s *reservedSet) letGoLocked(rp *reservedPod) *reservedPod {
	s.letGo[rp.name] = rp.uid
	return s.takeLocked(rp)
}

// observe updates the set from one pod event. mine says the pod is this
// run's reserved pod of its profile's current template; ready whether it
// is Ready. It returns whether the pod now needs a stream prepared, and the
// entry it took out when the pod is no longer this run's (whose stream the
// caller closes).
func (s *reservedSet) observe(name, profile string, uid types.UID, mine, ready bool, now time.Time) (prepare bool, gone *reservedPod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp, held := s.pods[name]
	if held && (!mine || rp.uid != uid) {
		gone, held = s.takeLocked(rp), false
	}
	if let, ok := s.letGo[name]; ok && (!mine || let != uid) {
		delete(s.letGo, name)
	}
	if _, ok := s.letGo[name]; !mine || ok {
		return false, gone
	}
	if !held {
		rp = &reservedPod{name: name, profile: profile, uid: uid, since: now}
		s.pods[name] = rp
		s.moveLocked(rp, resWarming)
	}
	if ready && rp.state == resWarming {
		s.moveLocked(rp, resPreparing)
		return true, gone
	}
	return false, gone
}

// drop forgets a deleted pod: takes it out of the set, if it is there,
// and ends its letGo entry.
func (s *reservedSet) drop(name string) *reservedPod {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.letGo, name)
	if rp, ok := s.pods[name]; ok {
		return s.takeLocked(rp)
	}
	return nil
}

// takeOut takes a pod out of the set for the caller to delete, if it is
// there; see letGo.
func (s *reservedSet) takeOut(name string) *reservedPod {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rp, ok := s.pods[name]; ok {
		return s.letGoLocked(rp)
	}
	return nil
}

// toPrepare returns the pod a worker should open a stream into, if it is
// still in the set waiting for one.
func (s *reservedSet) toPrepare(name string) (reservedPod, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp, ok := s.pods[name]
	if !ok || rp.state != resPreparing {
		return reservedPod{}, false
	}
	return *rp, true
}

// prepared gives a pod its stream; false (the caller closes the stream)
// when the pod left the set, or changed, while the stream opened. A nil
// stream marks a failed preparation: the pod stays, bare.
func (s *reservedSet) prepared(name string, uid types.UID, stream scheduler.Prepared) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp, ok := s.pods[name]
	if !ok || rp.uid != uid || rp.state != resPreparing {
		return false
	}
	if stream == nil {
		s.moveLocked(rp, resBare)
		return true
	}
	rp.stream = stream
	s.moveLocked(rp, resPrepared)
	return true
}

// handOut takes the profile's best pod for a login out of the set: the
// longest-prepared one, else a Ready one without a stream. nil when the
// set has no Ready pod of the profile.
func (s *reservedSet) handOut(profile string) *reservedPod {
	s.mu.Lock()
	defer s.mu.Unlock()
	ls := s.lists[profile]
	if ls == nil {
		return nil
	}
	for _, st := range []reservedState{resPrepared, resBare, resPreparing} {
		if e := ls[st].Front(); e != nil {
			return s.letGoLocked(e.Value.(*reservedPod))
		}
	}
	return nil
}

// count is how many pods of the profile the set holds, in any state.
func (s *reservedSet) count(profile string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.countLocked(profile)
}

func (s *reservedSet) countLocked(profile string) int {
	ls := s.lists[profile]
	if ls == nil {
		return 0
	}
	n := 0
	for i := range ls {
		n += ls[i].Len()
	}
	return n
}

// surplus takes out the pods of the profile beyond share, the cheapest
// first (warming, bare, preparing, then prepared, each oldest first), once
// the set has held more than share for at least after: the published share
// and the pods the leader creates for it arrive through different watches,
// so a surplus that lasts less than that may be pods created for a share
// this replica has not seen yet.
func (s *reservedSet) surplus(profile string, share int, after time.Duration, now time.Time) []*reservedPod {
	s.mu.Lock()
	defer s.mu.Unlock()
	extra := s.countLocked(profile) - share
	if extra <= 0 {
		delete(s.surplusSince, profile)
		return nil
	}
	since, ok := s.surplusSince[profile]
	if !ok {
		s.surplusSince[profile] = now
		return nil
	}
	if now.Sub(since) < after {
		return nil
	}
	delete(s.surplusSince, profile)
	var out []*reservedPod
	ls := s.lists[profile]
	for _, st := range []reservedState{resWarming, resBare, resPreparing, resPrepared} {
		for extra > 0 && ls[st].Len() > 0 {
			out = append(out, s.letGoLocked(ls[st].Front().Value.(*reservedPod)))
			extra--
		}
	}
	return out
}

// counts returns, per profile, the pods held.
func (s *reservedSet) counts() (held map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	held = map[string]int{}
	for prof := range s.lists {
		held[prof] = s.countLocked(prof)
	}
	return held
}

// preparedKinds returns how many of the set's prepared streams, over every
// profile, have a terminal and how many are plain. The two kinds cost
// podgate differently (a plain one is a SPDY connection, see kube), so
// an operator reading the cost of the reserved pods needs them apart.
func (s *reservedSet) preparedKinds() (terminal, plain int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ls := range s.lists {
		for e := ls[resPrepared].Front(); e != nil; e = e.Next() {
			if e.Value.(*reservedPod).stream.TTY() {
				terminal++
			} else {
				plain++
			}
		}
	}
	return terminal, plain
}

// takeAll empties the set, on the way out of Run.
func (s *reservedSet) takeAll() []*reservedPod {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*reservedPod, 0, len(s.pods))
	for _, rp := range s.pods {
		out = append(out, s.letGoLocked(rp))
	}
	return out
}

// closeStream closes the stream of a pod taken out of the set, if any.
func (rp *reservedPod) closeStream() {
	if rp != nil && rp.stream != nil {
		_ = rp.stream.Close()
		rp.stream = nil
	}
}

// handable is how many pods of the profile a hand-out could take now.
func (s *reservedSet) handable(profile string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	ls := s.lists[profile]
	if ls == nil {
		return 0
	}
	return ls[resPrepared].Len() + ls[resBare].Len() + ls[resPreparing].Len()
}
