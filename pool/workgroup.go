package pool

import "sync"

// workGroup tracks the goroutines that outlive a call (creations,
// deletes, claim records), like a sync.WaitGroup that may be added to
// while someone waits. A WaitGroup may not: the informer's event handlers
// start such work at any time (an event that dooms a pod deletes it in
// the background), including while Run, or a test, waits for the work
// already started, and an Add from zero during a Wait is a misuse the race
// detector reports and the runtime may panic on ("WaitGroup is reused
// before previous Wait has returned"). Wait here returns at a moment when
// nothing is running; work started after that is not waited for.
type workGroup struct {
	// mu protects n; idle is signalled when n drops to zero.
	mu   sync.Mutex
	idle *sync.Cond
	n    int
}

func newWorkGroup() *workGroup {
	w := &workGroup{}
	w.idle = sync.NewCond(&w.mu)
	return w
}

// Go runs f in a goroutine of its own, tracked until it returns.
func (w *workGroup) Go(f func()) {
	w.mu.Lock()
	w.n++
	w.mu.Unlock()
	go func() {
		defer w.done()
		f()
	}()
}

func (w *workGroup) done() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n--
	if w.n == 0 {
		w.idle.Broadcast()
	}
}

// Wait blocks until no tracked goroutine is running.
func (w *workGroup) Wait() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.n > 0 {
		w.idle.Wait()
	}
}
