package pool

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/scheduler"
)

// Start slots. A node starts pods at a rate its CPUs set, and every pod
// asked for beyond that only queues and slows the others down: on a 2-CPU
// node, at 3 logins/s with a pod per login, pods took 44 s to start and,
// as misses kept asking for more, stopped fitting the node at all. So each
// replica keeps at most MaxStarting pods of a profile starting at once
// (created, or being created, and not yet Ready), counting the pool's own
// and the cold pods of waiting users alike. A user who misses while every
// slot is taken waits in the queue without a pod of their own: they take
// the first pod that turns Ready for them (see handoff), or a slot as one
// frees, in the order they came.

// podlessPrefix starts the queue key of a waiter without a pod yet; pod
// names cannot contain '~', so the keys never collide with pod names.
const podlessPrefix = "~"

// podlessKeyLocked returns a fresh queue key for a waiter without a pod.
func (p *Pool) podlessKeyLocked() string {
	p.podlessSeq++
	return podlessPrefix + strconv.FormatUint(p.podlessSeq, 10)
}

// startingLocked counts the profile's pods starting: those the cache shows
// not yet Ready, not failed and not being deleted, and those this replica
// is creating or has created but the cache does not show yet.
func (p *Pool) startingLocked(prof *profile.Profile) int {
	objs, _ := p.pods.GetIndexer().ByIndex(indexProfile, prof.Name)
	n := 0
	for _, o := range objs {
		if pod, ok := o.(*corev1.Pod); ok && podStarting(pod) {
			n++
		}
	}
	// A pod leaves pending, and a waiter's pod coldUnseen, when the cache
	// shows it; for a moment it may be counted twice, never nowhere.
	return n + len(p.pending[prof.Name]) + p.coldUnseen[prof.Name]
}

// podStarting reports whether a pod holds a start slot: not yet Ready, and
// neither failed (the leader deletes those), released nor being deleted.
func podStarting(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || podReady(pod) || pod.Labels[LabelState] == StateReleased {
		return false
	}
	_, bad := podFailure(pod)
	return !bad
}

// signalSlotLocked wakes the profile's waiters when a pod event may have
// freed a start slot (or made an idle pod Ready); gone is true for a
// deleted pod.
func (p *Pool) signalSlotLocked(pod *corev1.Pod, gone bool) {
	name := pod.Labels[LabelProfile]
	if len(p.coldQueue[name]) > 0 && (gone || !podStarting(pod)) {
		p.signalIdleReadyLocked(name)
	}
}

// freeSlotsLocked is how many more pods of the profile may start now.
func (p *Pool) freeSlotsLocked(prof *profile.Profile) int {
	return max(0, p.opts.MaxStarting-p.startingLocked(prof))
}

// mayStartLocked reports whether the waiter queued under key may create
// its own pod now: a slot is free for it once every waiter without a pod
// ahead of it in the queue has one.
func (p *Pool) mayStartLocked(prof *profile.Profile, key string) bool {
	free := p.freeSlotsLocked(prof)
	for _, k := range p.coldQueue[prof.Name] {
		if k == key {
			return free > 0
		}
		if strings.HasPrefix(k, podlessPrefix) {
			free--
		}
	}
	return false
}

// rekeyLocked replaces a waiter's queue key, keeping its place.
func (p *Pool) rekeyLocked(profile, from, to string) {
	for i, k := range p.coldQueue[profile] {
		if k == from {
			p.coldQueue[profile][i] = to
			return
		}
	}
}

// coldWait is one user waiting in Create: queued under key, first without
// a pod, then, once a slot is theirs, with the cold pod created for them
// (whose name is then the key).
type coldWait struct {
	pool *Pool
	prof *profile.Profile
	key  string
	// ch wakes the waiter when its pod changes.
	ch chan struct{}
	// created is the waiter's own pod, nil until a slot was free; at is
	// when it was created.
	created *corev1.Pod
	at      time.Time
	// wasSeen: the cache has shown created. holdsSlot: the waiter counts
	// in coldUnseen. ready: the user got a pod, so created must stay.
	wasSeen, holdsSlot, ready bool
}

// createIfSlot creates the waiter's own pod when a start slot is theirs,
// and does nothing otherwise.
func (w *coldWait) createIfSlot(ctx context.Context, c scheduler.Claim) error {
	p := w.pool
	p.mu.Lock()
	if !p.mayStartLocked(w.prof, w.key) {
		p.mu.Unlock()
		return nil
	}
	p.coldUnseen[w.prof.Name]++
	w.holdsSlot = true
	p.mu.Unlock()
	w.at = p.clock.Now()
	created, err := p.client.CoreV1().Pods(p.opts.Namespace).Create(ctx, p.newPod(w.prof, StateClaimed, &c, w.at), metav1.CreateOptions{})
	if err != nil {
		w.releaseSlot()
		return p.createError(w.prof, err)
	}
	p.mu.Lock()
	w.created = created
	p.waiters[created.Name] = w.ch
	p.rekeyLocked(w.prof.Name, w.key, created.Name)
	w.key = created.Name
	p.mu.Unlock()
	return nil
}

// seen records that the cache shows the waiter's pod, which from then on
// counts as starting through the cache.
func (w *coldWait) seen() {
	w.wasSeen = true
	w.releaseSlot()
}

func (w *coldWait) releaseSlot() {
	if !w.holdsSlot {
		return
	}
	w.holdsSlot = false
	p := w.pool
	p.mu.Lock()
	if p.coldUnseen[w.prof.Name]--; p.coldUnseen[w.prof.Name] <= 0 {
		delete(p.coldUnseen, w.prof.Name)
	}
	p.mu.Unlock()
}

// done leaves the queue, deleting the waiter's pod unless the user got it
// or it joined the pool.
func (w *coldWait) done() {
	p := w.pool
	w.releaseSlot()
	if w.created != nil && !w.ready {
		p.deleteInBackground(w.created.Name, w.created.UID)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.created != nil {
		delete(p.waiters, w.created.Name)
	}
	q := slices.DeleteFunc(p.coldQueue[w.prof.Name], func(k string) bool { return k == w.key })
	if len(q) == 0 {
		delete(p.coldQueue, w.prof.Name)
	} else {
		p.coldQueue[w.prof.Name] = q
	}
	// The waiters behind this one moved up: an idle pod or a start slot
	// they were too far back for may now be theirs.
	p.signalIdleReadyLocked(w.prof.Name)
}

// what names what the waiter waits for, for the operator's log.
func (w *coldWait) what() string {
	if w.created == nil {
		return "no pod of its own yet: every start slot was taken"
	}
	return fmt.Sprintf("pod %q", w.created.Name)
}
