package scheduler

import (
	"context"
	"sync/atomic"
)

// Critical-path API requests: the proof that a warm login makes no API call
// before the user's command runs is podgate's own count, not a timing.
// Attach gives each login a trace, carried in the contexts of everything the
// login waits for (the claim, the exec start); the process's API client
// calls CountAPIRequest for every request it sends (see
// kube/kubemetrics.CountingTransport), which counts the request against the
// login whose context it carries, until the login's first output. Work the
// login does not wait for (the claim record written in parallel, a spare
// stream, the refill) runs on contexts without the trace, and the count
// shows it is not on the path: the podgate_attach_api_requests histogram.

// apiTrace counts one login's API requests until its first output.
type apiTrace struct {
	n      atomic.Int64
	closed atomic.Bool
}

type apiTraceKey struct{}

// withAPITrace returns ctx carrying t; a nil t changes nothing.
func withAPITrace(ctx context.Context, t *apiTrace) context.Context {
	if t == nil {
		return ctx
	}
	return context.WithValue(ctx, apiTraceKey{}, t)
}

// CountAPIRequest counts one API request made with ctx, if ctx belongs to a
// login's critical path that has not yet produced output.
func CountAPIRequest(ctx context.Context) {
	if t, ok := ctx.Value(apiTraceKey{}).(*apiTrace); ok && !t.closed.Load() {
		t.n.Add(1)
	}
}

// end closes the trace and returns its count.
func (t *apiTrace) end() int64 {
	t.closed.Store(true)
	return t.n.Load()
}
