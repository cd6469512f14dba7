package pool

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/scheduler"
)

// Waiting for a pod: the users Claim found no warm pod for, from AwaitPod's
// call to their pod, in one state machine.
//
// Start slots. A node starts pods at a rate its CPUs set, and every pod
// asked for beyond that only queues and slows the others down: on a 2-CPU
// node, at 3 logins/s with a pod per login, pods took 44 s to start and, as
// misses kept asking for more, stopped fitting the node at all. So at most
// MaxStarting pods of a profile start at once (created, or being created,
// and not yet Ready), the pool's own and the waiting users' alike. A user
// who finds every slot taken waits in line without a pod of their own.
//
// Handoff. A waiting user takes the first pod of the profile that is ready
// for them: their own, one of this run's reserved pods, or an unreserved
// idle one. Without it, a burst's waiters each wait for the pod created for
// them while the refill pods the same burst started turn Ready and sit
// idle. A waiter that takes another pod gives its own, still starting, to
// the pool (recycle), so no start is wasted. Pods and start slots go to the
// longest waiters first: with n pods ready, only the first n in line try.
//
// A waiter's states (waitState); only its own goroutine moves it, through
// the queue, under the queue's lock, so that the queue can count slots:
//
//	waitQueued ──(a slot is theirs)──► waitCreating ──(created)──► waitStarting
//	    │                                   │                          │
//	    │                                   └──(create failed)──► waitGaveUp ◄──(failed, gone,
//	    └──────────────(handoff)──────────► waitServed ◄──(Ready, or handoff)─┘   timeout, ctx)
type waitState int

const (
	// waitQueued: in line without a pod of its own.
	waitQueued waitState = iota
	// waitCreating: holds a start slot; its pod's create call is in
	// flight.
	waitCreating
	// waitStarting: its own pod exists and is not yet Ready.
	waitStarting
	// waitServed: got a pod, its own or by handoff.
	waitServed
	// waitGaveUp: its context ended, MaxWait passed, its pod failed or
	// vanished, or its create call failed.
	waitGaveUp
)

// waiter is one user in AwaitPod.
type waiter struct {
	prof  *profile.Profile
	claim scheduler.Claim
	// ch wakes the waiter when its own pod changes; capacity 1.
	ch chan struct{}

	// The queue's mu protects the fields below.
	state waitState
	// own is the waiter's own pod from waitStarting on; createdAt when
	// its create call was made; ownSeen whether the cache has shown it
	// (until then it holds a start slot through the queue).
	own       *corev1.Pod
	createdAt time.Time
	ownSeen   bool
}

// waitQueue is every profile's line of waiters. Its lock is a leaf.
type waitQueue struct {
	// mu protects the maps below and every waiter's state fields.
	mu sync.Mutex
	// lines holds, per profile, the waiters in arrival order.
	lines map[string][]*waiter
	// byPod finds a waiter by its own pod's name.
	byPod map[string]*waiter
	// signals holds, per profile, the channel closed at the next pod that
	// may serve a waiter (or a freed start slot); see signal.
	signals map[string]chan struct{}
	// recycled holds when each cold pod given to the pool was created, so
	// that its start is still measured when it turns Ready.
	recycled map[string]time.Time
}

func newWaitQueue() *waitQueue {
	return &waitQueue{
		lines: map[string][]*waiter{}, byPod: map[string]*waiter{},
		signals: map[string]chan struct{}{}, recycled: map[string]time.Time{},
	}
}

// join puts a new waiter at the end of its profile's line.
func (q *waitQueue) join(prof *profile.Profile, c scheduler.Claim) *waiter {
	w := &waiter{prof: prof, claim: c, ch: make(chan struct{}, 1)}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.lines[prof.Name] = append(q.lines[prof.Name], w)
	return w
}

// leave takes w out of line and wakes those behind it: a pod or a slot
// they were too far back for may now be theirs.
func (q *waitQueue) leave(w *waiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.own != nil {
		delete(q.byPod, w.own.Name)
	}
	name := w.prof.Name
	if line := slices.DeleteFunc(q.lines[name], func(x *waiter) bool { return x == w }); len(line) > 0 {
		q.lines[name] = line
	} else {
		delete(q.lines, name)
	}
	q.wakeLocked(name)
}

// signal returns a channel closed the next time a pod may serve one of the
// profile's waiters. Taken before the cache is read, it cannot miss a pod
// that turns Ready after the read.
func (q *waitQueue) signal(profile string) <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	ch := q.signals[profile]
	if ch == nil {
		ch = make(chan struct{})
		q.signals[profile] = ch
	}
	return ch
}

func (q *waitQueue) wakeLocked(profile string) {
	if ch := q.signals[profile]; ch != nil {
		close(ch)
		delete(q.signals, profile)
	}
}

// position is w's 0-based place in its line.
func (q *waitQueue) position(w *waiter) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	line := q.lines[w.prof.Name]
	if i := slices.Index(line, w); i >= 0 {
		return i
	}
	return len(line)
}

// takeSlot moves w from waitQueued to waitCreating when a start slot is
// free for it: starting pods are counted elsewhere (the cache and the
// leader's creations) plus the waiters' pods the cache does not show yet,
// and every waiter without a pod ahead of w takes a slot first.
func (q *waitQueue) takeSlot(w *waiter, startingElsewhere, maxStarting int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.state != waitQueued {
		return false
	}
	free := maxStarting - startingElsewhere - q.unseenLocked(w.prof.Name)
	for _, x := range q.lines[w.prof.Name] {
		if x == w {
			if free > 0 {
				w.state = waitCreating
				return true
			}
			return false
		}
		if x.state == waitQueued {
			free--
		}
	}
	return false
}

// unseen counts the profile's waiters whose pod holds a start slot the
// cache does not show yet.
func (q *waitQueue) unseen(profile string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.unseenLocked(profile)
}

func (q *waitQueue) unseenLocked(profile string) int {
	n := 0
	for _, x := range q.lines[profile] {
		if x.state == waitCreating || (x.state == waitStarting && !x.ownSeen) {
			n++
		}
	}
	return n
}

// created records w's own pod.
func (q *waitQueue) created(w *waiter, pod *corev1.Pod, at time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	w.own, w.createdAt, w.state = pod, at, waitStarting
	q.byPod[pod.Name] = w
}

// move puts w in state s.
func (q *waitQueue) move(w *waiter, s waitState) {
	q.mu.Lock()
	defer q.mu.Unlock()
	w.state = s
}

// ownPod returns w's own pod, and whether the cache has shown it.
func (q *waitQueue) ownPod(w *waiter) (*corev1.Pod, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return w.own, w.ownSeen
}

// markSeen records that the cache shows w's own pod.
func (q *waitQueue) markSeen(w *waiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	w.ownSeen = true
}

// recycle remembers when a cold pod given to the pool was created.
func (q *waitQueue) recycle(name string, created time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.recycled[name] = created
}

// podChanged wakes the waiter whose pod changed, and, when servable (the
// pod may now serve a waiter) or the pod no longer holds a start slot, the
// profile's waiters. It returns the creation time of a recycled cold pod
// that just turned Ready, for its start metric.
func (q *waitQueue) podChanged(pod *corev1.Pod, servable bool) (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w, ok := q.byPod[pod.Name]; ok {
		w.ownSeen = true
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
	name := pod.Labels[LabelProfile]
	if servable || (len(q.lines[name]) > 0 && !podStarting(pod)) {
		q.wakeLocked(name)
	}
	at, ok := q.recycled[pod.Name]
	if ok && podReady(pod) {
		delete(q.recycled, pod.Name)
		return at, true
	}
	return time.Time{}, false
}

// podGone wakes the waiter whose pod was deleted, and the profile's
// waiters, whose start slot it may have held.
func (q *waitQueue) podGone(pod *corev1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w, ok := q.byPod[pod.Name]; ok {
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
	delete(q.recycled, pod.Name)
	if name := pod.Labels[LabelProfile]; len(q.lines[name]) > 0 {
		q.wakeLocked(name)
	}
}

// AwaitPod waits for a pod when Claim found none: the user's own pod,
// created claimed for them once a start slot is theirs, or whichever pod
// of the profile is ready for them first (see Handoff above); see
// scheduler.Pools.
func (p *Pool) AwaitPod(ctx context.Context, name string, c scheduler.Claim, progress func(scheduler.WaitState)) (*scheduler.Pod, error) {
	if err := p.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := p.apiUnavailable(name); err != nil {
		return nil, err
	}
	prof, err := p.validProfile(name)
	if err != nil {
		return nil, err
	}
	// Fail fast while the profile is known broken and backing off: a user
	// should not wait minutes for a pod that cannot start.
	if f, refuse := p.demand.refuseNow(prof, p.clock.Now()); refuse {
		return nil, refusal(prof.Name, f)
	}
	w := p.queue.join(prof, c)
	defer p.endWait(w)
	timer := p.clock.NewTimer(prof.MaxWait)
	defer timer.Stop()
	phase, told := "starting", scheduler.WaitState{}
	for {
		wake := p.queue.signal(prof.Name)
		pod, again, err := p.advance(ctx, w, &phase)
		if pod != nil || err != nil {
			return pod, err
		}
		if again {
			continue
		}
		p.tell(w, phase, &told, progress)
		select {
		case <-wake:
		case <-w.ch:
		case <-ctx.Done():
			p.queue.move(w, waitGaveUp)
			return nil, fmt.Errorf("waiting for a pod of profile %q (%s): %w", prof.Name, p.waitingFor(w), ctx.Err())
		case <-timer.C():
			p.queue.move(w, waitGaveUp)
			return nil, fmt.Errorf("waiting %s for a pod of profile %q (%s): %w", prof.MaxWait, prof.Name, p.waitingFor(w), scheduler.ErrWaitTimeout)
		}
	}
}

// tell gives the waiter's caller its phase, place in line and estimated
// wait when any of them changed since it was last told.
func (p *Pool) tell(w *waiter, phase string, told *scheduler.WaitState, progress func(scheduler.WaitState)) {
	if progress == nil {
		return
	}
	pos := p.queue.position(w) + 1
	st := scheduler.WaitState{Phase: phase, Position: pos, Wait: waitEstimate(pos, p.demand.capacity(w.prof, p.clock.Now()))}
	if st != *told {
		*told = st
		progress(st)
	}
}

// waitEstimate is how long the user at position (1-based) in line waits
// for a pod when the cluster turns pods Ready at capacity per second
// (capacity.go): lines are served in arrival order (handoffs and start
// slots go to the longest waiters first), so about position / capacity,
// to the second; 0 when the capacity is not known.
func waitEstimate(position int, capacity float64) time.Duration {
	if capacity <= 0 || position <= 0 {
		return 0
	}
	return time.Duration(float64(position) / capacity * float64(time.Second)).Round(time.Second)
}

// advance moves w on by what the cache and the pool show now, and keeps
// *phase to what w's own pod is doing. It returns w's pod once served, or
// why it gave up; again asks for another step at once (w just created its
// pod, whose events may have come before it was registered).
func (p *Pool) advance(ctx context.Context, w *waiter, phase *string) (*scheduler.Pod, bool, error) {
	prof := w.prof
	if own, seen := p.queue.ownPod(w); own != nil {
		cur, ok := p.cachedPod(own.Name)
		switch {
		case ok && cur.UID == own.UID:
			p.queue.markSeen(w)
			if podReady(cur) {
				p.queue.move(w, waitServed)
				p.metrics.podStart.WithLabelValues(prof.Name).Observe(p.clock.Since(w.createdAt).Seconds())
				return claimedPod(prof, cur, false), false, nil
			}
			if f, bad := podFailure(cur); bad {
				p.queue.move(w, waitGaveUp)
				p.demand.recordFailure(prof, cur, f, p.clock.Now())
				return nil, false, refusal(prof.Name, f)
			}
			*phase = waitPhase(cur)
		case seen:
			p.queue.move(w, waitGaveUp)
			return nil, false, fmt.Errorf("waiting for pod %q: %w", own.Name, scheduler.ErrPodGone)
		}
	}
	if pod := p.handoff(ctx, w); pod != nil {
		p.queue.move(w, waitServed)
		return pod, false, nil
	}
	starting, _ := p.pods.GetIndexer().ByIndex(indexStarting, prof.Name)
	if !p.queue.takeSlot(w, len(starting)+p.creating.count(prof.Name), p.opts.MaxStarting) {
		return nil, false, nil
	}
	at := p.clock.Now()
	created, err := p.client.CoreV1().Pods(p.opts.Namespace).Create(ctx, p.newPod(prof, StateClaimed, p.opts.ReplicaID, p.run, &w.claim, at), metav1.CreateOptions{})
	if err != nil {
		p.queue.move(w, waitGaveUp)
		return nil, false, p.createError(prof, err)
	}
	p.queue.created(w, created, at)
	return nil, true, nil
}

// handoff gives w a pod that is ready now, if w is far enough ahead in
// line: one of this run's reserved pods, whose claim record is written
// before w gets it (w has waited; 10 ms more keeps its own pod as a
// fallback should the record fail), else an unreserved idle pod. w's own
// pod, if any, goes to the pool. nil, and nothing changed, when no pod
// could be had.
func (p *Pool) handoff(ctx context.Context, w *waiter) *scheduler.Pod {
	prof := w.prof
	now := p.clock.Now()
	reserved := 0
	if p.live.mayHandOut(now) {
		reserved = p.reserved.handable(prof.Name)
	}
	cands := p.candidates(prof)
	if p.queue.position(w) >= reserved+len(cands) {
		return nil
	}
	var pod *scheduler.Pod
	if rp := p.takeReserved(prof, now); rp != nil {
		if err := p.recordClaim(ctx, prof, rp, w.claim); err == nil {
			p.metrics.claims.WithLabelValues(prof.Name, "handoff").Inc()
			pod = claimedPod(prof, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.opts.Namespace, Name: rp.name, UID: rp.uid}}, false)
			if rp.stream != nil {
				pod.Stream = p.kinds.observe(prof.Name, rp.stream)
			}
		} else {
			rp.closeStream()
		}
	}
	if pod == nil {
		var err error
		if pod, err = p.claimUnreserved(ctx, prof, cands, w.claim, "handoff"); err != nil {
			return nil
		}
	}
	if own, _ := p.queue.ownPod(w); own != nil {
		p.recycle(own, w.createdAt)
	}
	return pod
}

// takeReserved takes one of this run's reserved pods of the profile out of
// the set, if it may hand one out now.
func (p *Pool) takeReserved(prof *profile.Profile, now time.Time) *reservedPod {
	if !p.live.mayHandOut(now) {
		return nil
	}
	return p.reserved.handOut(prof.Name)
}

// endWait leaves the line, deleting the waiter's own pod unless the user
// got it or it went to the pool.
func (p *Pool) endWait(w *waiter) {
	p.queue.mu.Lock()
	own, state := w.own, w.state
	p.queue.mu.Unlock()
	if own != nil && state != waitServed {
		why := reaped("created for a login that stopped waiting for it")
		if cur, ok := p.cachedPod(own.Name); ok && cur.UID == own.UID {
			if f, bad := podFailure(cur); bad {
				why = cannotStart(w.prof.Name, f, cur)
			}
		}
		p.deleteInBackground(own.Name, own.UID, why)
	}
	p.queue.leave(w)
}

// waitingFor names what w waits for, for the operator's log.
func (p *Pool) waitingFor(w *waiter) string {
	if own, _ := p.queue.ownPod(w); own != nil {
		return fmt.Sprintf("pod %q", own.Name)
	}
	return "no pod of its own yet: every start slot was taken"
}

// podStarting reports whether a pod holds a start slot: not yet Ready, and
// neither failed (the leader deletes those), released, parked nor being
// deleted.
func podStarting(pod *corev1.Pod) bool {
	if s := pod.Labels[LabelState]; pod.DeletionTimestamp != nil || podReady(pod) || s == StateReleased || s == StateParked {
		return false
	}
	_, bad := podFailure(pod)
	return !bad
}
