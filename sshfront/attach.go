package sshfront

import (
	"context"
	"sync"

	"github.com/podgate/podgate/scheduler"
)

// attachState is the attachment as it is being made: sessions that arrive
// early wait on done and show the progress messages meanwhile.
type attachState struct {
	done chan struct{}
	att  scheduler.Attachment // valid once done is closed
	err  error                // valid once done is closed

	// mu protects msg and changed.
	mu      sync.Mutex
	msg     string
	changed chan struct{} // closed and replaced on each progress message
}

func newAttachState() *attachState {
	return &attachState{done: make(chan struct{}), changed: make(chan struct{})}
}

// progress is the scheduler.Progress callback: it never blocks.
func (a *attachState) progress(msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.msg = msg
	close(a.changed)
	a.changed = make(chan struct{})
}

func (a *attachState) set(att scheduler.Attachment, err error) {
	a.att, a.err = att, err
	close(a.done)
}

// result returns the outcome; call it only after done is closed.
func (a *attachState) result() (scheduler.Attachment, error) {
	<-a.done
	return a.att, a.err
}

// wait blocks until the attachment is made or ctx ends, calling show with
// each new progress message.
func (a *attachState) wait(ctx context.Context, show func(string)) (scheduler.Attachment, error) {
	shown := ""
	for {
		a.mu.Lock()
		msg, changed := a.msg, a.changed
		a.mu.Unlock()
		if msg != shown && msg != "" {
			show(msg)
			shown = msg
		}
		select {
		case <-a.done:
			return a.att, a.err
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
