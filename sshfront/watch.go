package sshfront

import (
	"context"
	"fmt"
	"time"

	"github.com/podgate/podgate/scheduler"
)

// Reasons a session was cut, as reported in the audit line.
const (
	cutIdle       = "idle_timeout"
	cutMaxSession = "max_session"
)

// watch enforces the profile's idle timeout and maximum session length. A
// terminal user is warned WarnBefore the cut-off; at the cut-off everyone
// gets a goodbye line and the process's context is cancelled. It returns
// the reason it cut the session, or "" when ctx ended first.
//
// Activity is read from lastActive when the timer fires rather than pushed
// on every byte, so a busy session costs nothing extra.
func (s *session) watch(ctx context.Context, st scheduler.Settings, cut context.CancelFunc) string {
	if st.IdleTimeout <= 0 && st.MaxSession <= 0 {
		return ""
	}
	s.mu.Lock()
	tty := s.nl == "\r\n"
	s.mu.Unlock()
	maxLead := warnLead(st.MaxSession, s.c.srv.cfg.WarnBefore)
	idleLead := warnLead(st.IdleTimeout, s.c.srv.cfg.WarnBefore)
	start := time.Unix(0, s.lastActive.Load())
	var idleWarnedAt time.Time // zero: no idle warning pending
	maxWarned := false

	t := time.NewTimer(0)
	defer t.Stop()
	for {
		now := time.Now()
		var next time.Time
		at := func(tm time.Time) {
			if next.IsZero() || tm.Before(next) {
				next = tm
			}
		}
		if st.MaxSession > 0 {
			end := start.Add(st.MaxSession)
			switch {
			case !now.Before(end):
				s.notify(fmt.Sprintf("podgate: this session reached its maximum length of %v. Goodbye.", st.MaxSession))
				cut()
				return cutMaxSession
			case tty && !maxWarned && !now.Before(end.Add(-maxLead)):
				maxWarned = true
				s.notify(fmt.Sprintf("podgate: this session reaches its maximum length in %v", end.Sub(now).Round(time.Second)))
			}
			if tty && !maxWarned {
				at(end.Add(-maxLead))
			} else {
				at(end)
			}
		}
		if st.IdleTimeout > 0 {
			last := time.Unix(0, s.lastActive.Load())
			if !idleWarnedAt.IsZero() && last.After(idleWarnedAt) {
				idleWarnedAt = time.Time{} // the user came back
			}
			end := last.Add(st.IdleTimeout)
			switch {
			case !now.Before(end):
				s.notify(fmt.Sprintf("podgate: no activity for %v, closing this session. Goodbye.", st.IdleTimeout))
				cut()
				return cutIdle
			case tty && idleWarnedAt.IsZero() && !now.Before(end.Add(-idleLead)):
				idleWarnedAt = now
				s.notify(fmt.Sprintf("podgate: this session will be closed in %v for inactivity; press a key to keep it open", end.Sub(now).Round(time.Second)))
			}
			if tty && idleWarnedAt.IsZero() {
				at(end.Add(-idleLead))
			} else {
				at(end)
			}
		}
		t.Reset(next.Sub(now))
		select {
		case <-ctx.Done():
			return ""
		case <-t.C:
		}
	}
}

// warnLead is how long before a cut-off of limit a terminal user is warned:
// warnBefore, but never more than half the limit. Without that cap a limit
// shorter than warnBefore (an idle timeout of 30s against the default
// minute) would warn at the very start of a session, and again at once
// after every keystroke that clears a warning.
func warnLead(limit, warnBefore time.Duration) time.Duration {
	return min(warnBefore, limit/2)
}
