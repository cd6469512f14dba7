package pool

import (
	"time"

	"github.com/google/btree"
	corev1 "k8s.io/api/core/v1"
)

// idlePods are a pass's unreserved kept pods in the order the pass uses
// them: not Ready first, then Ready, each by creation, so that shrinking
// removes warming pods first and relabelling takes Ready pods first. They
// are frozen copies of the index's orders (a btree clone is O(1) and
// copies on write), less the doomed pods at the front of each.
type idlePods struct {
	warm, live         *btree.BTreeG[*corev1.Pod] // nil when empty
	skipWarm, skipLive int                        // doomed pods at the front
}

func treeLen(t *btree.BTreeG[*corev1.Pod]) int {
	if t == nil {
		return 0
	}
	return t.Len()
}

// Len is the number of unreserved kept pods.
func (s idlePods) Len() int { return treeLen(s.warm) - s.skipWarm + treeLen(s.live) - s.skipLive }

// first returns the first n pods (all of them if there are fewer).
func (s idlePods) first(n int) []*corev1.Pod {
	var out []*corev1.Pod
	for _, part := range []struct {
		t    *btree.BTreeG[*corev1.Pod]
		skip int
	}{{s.warm, s.skipWarm}, {s.live, s.skipLive}} {
		if part.t == nil {
			continue
		}
		i := 0
		part.t.Ascend(func(pod *corev1.Pod) bool {
			if len(out) >= n {
				return false
			}
			if i >= part.skip {
				out = append(out, pod)
			}
			i++
			return true
		})
	}
	return out
}

// descend calls fn on the pods from the last to the first, until fn
// returns false.
func (s idlePods) descend(fn func(*corev1.Pod) bool) {
	for _, part := range []struct {
		t    *btree.BTreeG[*corev1.Pod]
		skip int
	}{{s.live, s.skipLive}, {s.warm, s.skipWarm}} {
		if part.t == nil {
			continue
		}
		i, more := part.t.Len()-1, true
		part.t.Descend(func(pod *corev1.Pod) bool {
			if i < part.skip {
				return false
			}
			i--
			more = fn(pod)
			return more
		})
		if !more {
			return
		}
	}
}

// doomedCandidate is a spare pod the index found doomed; the pass asks
// doomedBecause why.
type doomedCandidate struct {
	pod   *corev1.Pod
	ready bool
	to    doomedTo
}

// doomedTo says who deletes a doomed pod.
type doomedTo int

const (
	doomedIdle  doomedTo = iota // an unreserved pod: the leader
	doomedOwn                   // this run's reserved pod: this replica
	doomedOther                 // another live replica's: that replica; it counts nowhere here
)

// indexView is what a pass reads from the index for one profile, under
// the index's lock.
type indexView struct {
	claimed, parked, lapsed                     int
	readyIdle, readyReserved, warming, starting int
	reserved                                    map[string]int
	doomed                                      []doomedCandidate
	unreserved                                  idlePods
	// shown says, of the names asked for, which the profile has (any
	// state); idle, which are unreserved kept pods.
	shown, idle map[string]bool
}

// read assembles a profile's view against its template hash, the live
// runs (owner to run), this replica's own key, and the clock. created and
// relabeling are the names the pass asks about (the pods in flight). Its
// cost is the number of buckets (owners and runs), doomed pods and names
// asked about, and O(log n) per clone.
func (x *podIndex) read(profile, hash string, runs map[string]string, self ownerRun, now time.Time, created, relabeling map[string]expectation) indexView {
	x.mu.Lock()
	defer x.mu.Unlock()
	v := indexView{reserved: map[string]int{}, shown: map[string]bool{}, idle: map[string]bool{}}
	pp := x.profiles[profile]
	if pp == nil {
		return v
	}
	if pp.hash != hash {
		x.rehashLocked(pp, hash)
	}
	v.claimed, v.parked = pp.claimed, pp.parked
	peeled := map[string]bool{}
	for key, b := range pp.buckets {
		idle := key == ownerRun{}
		if !idle && (runs[key.owner] == "" || runs[key.owner] != key.run) {
			v.lapsed += b.ready + b.notReady // reaped, or deleted by its replica's new run
			continue
		}
		v.warming += b.notReady
		if idle {
			v.readyIdle += b.ready
		} else {
			v.readyReserved += b.ready
		}
		to := doomedOther
		switch {
		case idle:
			to = doomedIdle
		case key == self:
			to = doomedOwn
		}
		add := func(pod *corev1.Pod, ready bool) {
			v.doomed = append(v.doomed, doomedCandidate{pod: pod, ready: ready, to: to})
			peeled[pod.Name] = true
		}
		for _, e := range b.doomed {
			add(e.pod, e.ready)
		}
		skipWarm := x.prefixLocked(b.warm, false, now, add)
		skipLive := x.prefixLocked(b.live, true, now, add)
		v.starting += b.warm.Len() - skipWarm
		if idle {
			v.unreserved = idlePods{warm: b.warm.Clone(), live: b.live.Clone(), skipWarm: skipWarm, skipLive: skipLive}
		} else if n := b.warm.Len() - skipWarm + b.live.Len() - skipLive; n > 0 {
			v.reserved[key.owner] += n
		}
	}
	for name := range created {
		v.shown[name] = pp.pods[name] != nil
	}
	for name := range relabeling {
		e := pp.pods[name]
		v.idle[name] = e != nil && e.class == classSpare && e.key == ownerRun{} && !e.static && !peeled[name]
	}
	return v
}

// prefixLocked counts the pods at the front of t (oldest first) that are
// past a deadline, handing each to add if add is not nil.
func (x *podIndex) prefixLocked(t *btree.BTreeG[*corev1.Pod], ready bool, now time.Time, add func(*corev1.Pod, bool)) int {
	n := 0
	t.Ascend(func(pod *corev1.Pod) bool {
		if !x.timeDoomed(pod, ready, now) {
			return false
		}
		n++
		if add != nil {
			add(pod, ready)
		}
		return true
	})
	return n
}
