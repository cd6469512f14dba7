package auth

import (
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// ThrottleConfig bounds failed attempts per source address.
type ThrottleConfig struct {
	// MaxFailures is how many failures within Window make an address
	// throttled. Zero disables throttling.
	MaxFailures int
	// Window is how long failures are remembered; each failure extends it,
	// so a client that keeps guessing stays throttled.
	Window time.Duration
	// Size is how many addresses are tracked at once; the least recently
	// failing ones are forgotten first.
	Size int
}

// Throttle counts failed authentication attempts per source address and
// refuses further attempts from an address over the limit. A throttled
// client gets the ordinary failure reply, so it learns nothing; the operator
// log says why, once per window rather than once per attempt.
//
// The expirable LRU it uses runs one cleanup goroutine for the life of the
// process; create one Throttle per server, not per connection.
type Throttle struct {
	cfg ThrottleConfig
	log *slog.Logger

	// mu makes the read-modify-write of an entry atomic; the cache has its
	// own lock for its internals.
	mu      sync.Mutex
	entries *expirable.LRU[string, *throttleEntry]
}

type throttleEntry struct {
	failures int
	loggedAt time.Time
}

// NewThrottle returns a Throttle; a zero MaxFailures gives one that never
// throttles.
func NewThrottle(cfg ThrottleConfig, log *slog.Logger) *Throttle {
	t := &Throttle{cfg: cfg, log: log}
	if cfg.MaxFailures > 0 {
		if t.cfg.Window <= 0 {
			t.cfg.Window = 5 * time.Minute
		}
		if t.cfg.Size <= 0 {
			t.cfg.Size = 10000
		}
		t.entries = expirable.NewLRU[string, *throttleEntry](t.cfg.Size, nil, t.cfg.Window)
	}
	return t
}

// Allow reports whether addr (a host, without port) may attempt to
// authenticate. A refusal counts as another failure.
func (t *Throttle) Allow(addr string) bool {
	if t.entries == nil {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries.Get(addr)
	if !ok || e.failures < t.cfg.MaxFailures {
		return true
	}
	e.failures++
	t.entries.Add(addr, e)
	now := time.Now()
	if now.Sub(e.loggedAt) >= t.cfg.Window {
		e.loggedAt = now
		t.log.Warn("throttling authentication attempts", "remote_ip", addr, "failures", e.failures, "window", t.cfg.Window)
	}
	return false
}

// Failed records a failed attempt from addr.
func (t *Throttle) Failed(addr string) {
	if t.entries == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries.Get(addr)
	if !ok {
		e = &throttleEntry{}
	}
	e.failures++
	t.entries.Add(addr, e)
}

// Succeeded forgets addr's failures; a user who typed a wrong password
// once is not punished for it after logging in.
func (t *Throttle) Succeeded(addr string) {
	if t.entries == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries.Remove(addr)
}
