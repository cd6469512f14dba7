package scheduler

import (
	"context"
	"sync"
)

// parksInFlight knows the user keys whose pod this replica is parking
// right now, so that a reconnect through this replica waits for the park
// instead of missing the pod. An scp followed at once by an sftp is the
// everyday case: the client opens its second connection as soon as the
// first one's session ends, while the server is still writing the park and
// waiting for its cache to show it, and the second login, finding nothing
// parked yet, was given a new, empty pod (seen in make test's
// TestLoginExperience on a loaded machine). Parks through other replicas
// are not known here; they are as fast as any user's reconnect is slow.
type parksInFlight struct {
	// mu protects keys. It is a leaf.
	mu   sync.Mutex
	keys map[string]*parkFlight
}

// parkFlight is one key's parks in flight; done closes when n drops to 0.
type parkFlight struct {
	n    int
	done chan struct{}
}

func newParksInFlight() *parksInFlight { return &parksInFlight{keys: map[string]*parkFlight{}} }

// begin records a park of key's pod in flight; end says it is over
// (parked, or released instead).
func (p *parksInFlight) begin(key string) (end func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.keys[key]
	if f == nil {
		f = &parkFlight{done: make(chan struct{})}
		p.keys[key] = f
	}
	f.n++
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if f.n--; f.n == 0 {
				close(f.done)
				delete(p.keys, key)
			}
		})
	}
}

// wait returns once no park of key's pod is in flight, or ctx ends.
func (p *parksInFlight) wait(ctx context.Context, key string) {
	p.mu.Lock()
	f := p.keys[key]
	p.mu.Unlock()
	if f == nil {
		return
	}
	select {
	case <-f.done:
	case <-ctx.Done():
	}
}
