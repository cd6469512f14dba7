package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/podgate/podgate/scheduler"
)

// apiHealth is the pool's verdict on whether the API server can serve it,
// fed by a probe of its /readyz every second. While the verdict is down,
// claims and creations fail at once with scheduler.ErrClusterUnavailable
// instead of each login waiting on a request that cannot succeed (a
// stopped API server refuses connections at once, but with etcd gone the
// API server accepts a claim and holds it for up to a minute).
//
// Only a definite answer counts: a probe that succeeds marks the API up,
// one that the server refuses or answers as unhealthy (connection refused,
// a 500 from /readyz) marks it down. A probe that merely runs out of time
// changes nothing, because under a burst of logins the probe waits in the
// client's own rate limiter and its timing out says nothing about the
// cluster.
type apiHealth struct {
	mu    sync.Mutex // protects the fields below
	down  bool
	since time.Time // when the verdict last changed
	last  error     // the failure that made it down
	// downSignal ends when the verdict goes down; see downCtx.
	downSignal context.Context
	signalDown context.CancelFunc
}

// observe records one probe result and reports whether the verdict changed.
func (h *apiHealth) observe(err error, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	var down bool
	switch {
	case err == nil:
		down = false
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return false
	default:
		down = true
		h.last = err
	}
	if down == h.down {
		return false
	}
	h.down, h.since = down, now
	if h.signalDown != nil {
		// Going down ends the current signal; going up makes the next
		// caller of downCtx start a fresh one.
		h.signalDown()
		h.downSignal, h.signalDown = nil, nil
	}
	return true
}

// unavailable returns the failure that made the API down, or nil when it
// is up.
func (h *apiHealth) unavailable() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.down {
		return nil
	}
	return h.last
}

// upFor reports whether the API has been available for at least d; before
// any outage was seen it is. After an outage every replica's liveness
// Lease may look expired only because nobody could renew it, so the reaper
// waits this long before it trusts an expired Lease again.
func (h *apiHealth) upFor(now time.Time, d time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.down && (h.since.IsZero() || now.Sub(h.since) >= d)
}

// probeAPI runs opts.APIProbe every opts.APIProbeEvery until ctx ends,
// logging each change of verdict.
func (p *Pool) probeAPI(ctx context.Context) {
	if p.opts.APIProbe == nil {
		return
	}
	t := p.clock.NewTicker(p.opts.APIProbeEvery)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, p.opts.APIProbeTimeout)
		err := p.opts.APIProbe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if p.api.observe(err, p.clock.Now()) {
			if err != nil {
				p.log.Warn("the API server is unavailable; refusing claims until it answers", "err", err)
			} else {
				p.log.Info("the API server is available again")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// apiUnavailable fails a claim or creation at once while the API server is
// known to be unavailable.
func (p *Pool) apiUnavailable(profile string) error {
	if err := p.api.unavailable(); err != nil {
		return fmt.Errorf("profile %q: the API server is unavailable (%w): %w", profile, err, scheduler.ErrClusterUnavailable)
	}
	return nil
}
