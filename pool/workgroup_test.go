package pool

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestWorkGroupAddDuringWait: work started while another goroutine waits
// (as informer handlers do during Run's shutdown wait) is legal, and Wait
// returns only once nothing runs; the race detector checks the first part.
func TestWorkGroupAddDuringWait(t *testing.T) {
	w := newWorkGroup()
	var ran atomic.Int32
	release := make(chan struct{})
	w.Go(func() { <-release; ran.Add(1) })
	var waiters sync.WaitGroup
	for range 4 {
		waiters.Add(1)
		go func() {
			defer waiters.Done()
			w.Wait()
			if ran.Load() == 0 {
				t.Error("Wait returned while the first goroutine still ran")
			}
		}()
	}
	for range 100 {
		w.Go(func() { ran.Add(1) })
	}
	close(release)
	waiters.Wait()
	w.Wait()
	if got := ran.Load(); got != 101 {
		t.Errorf("%d goroutines ran, want 101", got)
	}
}
