package sshfront

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/podgate/podgate/scheduler"
)

// Reasons a connection or session was cut, as reported in audit lines.
const (
	cutIdle       = "idle_timeout"
	cutMaxSession = "max_session"
)

// The connection-wide limits.
//
// The profile's idle timeout and maximum length bound the whole
// connection, not each session: a connection that opened no session
// (ssh -N, a ControlMaster, one used only for -L) holds a pod as surely as
// a shell does. Activity is any byte of session I/O or forwarded traffic
// (activity); keepalives and the server's own notices are not. A terminal
// user is warned WarnBefore the cut-off; at the cut-off every session gets
// a goodbye line on its terminal or stderr and ends with exit status 1,
// and then the connection is closed. x/crypto/ssh cannot send
// SSH_MSG_DISCONNECT after authentication, so a connection with no session
// is told nothing beyond the close ("Connection to HOST closed by remote
// host" in OpenSSH); the reason is in the audit line.

// activity is when bytes last moved on a connection, as UnixNano; the
// limits read it when their timer fires rather than being pushed every
// byte, so a busy connection costs nothing extra.
type activity struct{ last atomic.Int64 }

func (a *activity) touch()            { a.last.Store(time.Now().UnixNano()) }
func (a *activity) lastAt() time.Time { return time.Unix(0, a.last.Load()) }

// enforceLimits runs for the life of an authenticated connection: once the
// attachment is made, it applies the profile's limits (see above) until
// ctx ends or it has cut the connection.
func (c *conn) enforceLimits(ctx context.Context) {
	att, err := c.attach.wait(ctx, func(string) {})
	if err != nil {
		return
	}
	st := att.Settings()
	if st.IdleTimeout <= 0 && st.MaxSession <= 0 {
		return
	}
	c.active.touch() // the attachment itself: idle time starts now
	reason, msg := c.watchLimits(ctx, st)
	if reason == "" {
		return
	}
	c.srv.log.Info("closing connection at its limit", "conn_id", c.connID, "user", c.id.User, "cut", reason)
	c.cutAll(reason, msg)
	c.sconn.Close()
}

// watchLimits waits until the connection reaches its maximum length or
// its idle timeout, warning terminal users on the way, and returns the
// reason and the goodbye line; it returns "" when ctx ends first.
func (c *conn) watchLimits(ctx context.Context, st scheduler.Settings) (string, string) {
	maxLead := warnLead(st.MaxSession, c.srv.cfg.WarnBefore)
	idleLead := warnLead(st.IdleTimeout, c.srv.cfg.WarnBefore)
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
			end := c.acceptedAt.Add(st.MaxSession)
			switch {
			case !now.Before(end):
				return cutMaxSession, fmt.Sprintf("podgate: this session reached its maximum length of %v. Goodbye.", st.MaxSession)
			case !maxWarned && !now.Before(end.Add(-maxLead)):
				maxWarned = true
				c.notifyTerminals(fmt.Sprintf("podgate: this session reaches its maximum length in %v", end.Sub(now).Round(time.Second)))
			}
			if !maxWarned {
				at(end.Add(-maxLead))
			} else {
				at(end)
			}
		}
		if st.IdleTimeout > 0 {
			last := c.active.lastAt()
			if !idleWarnedAt.IsZero() && last.After(idleWarnedAt) {
				idleWarnedAt = time.Time{} // the user came back
			}
			end := last.Add(st.IdleTimeout)
			switch {
			case !now.Before(end):
				return cutIdle, fmt.Sprintf("podgate: no activity for %v, closing this session. Goodbye.", st.IdleTimeout)
			case idleWarnedAt.IsZero() && !now.Before(end.Add(-idleLead)):
				idleWarnedAt = now
				c.notifyTerminals(fmt.Sprintf("podgate: this session will be closed in %v for inactivity; press a key to keep it open", end.Sub(now).Round(time.Second)))
			}
			if idleWarnedAt.IsZero() {
				at(end.Add(-idleLead))
			} else {
				at(end)
			}
		}
		t.Reset(next.Sub(now))
		select {
		case <-ctx.Done():
			return "", ""
		case <-t.C:
		}
	}
}

// cutAll ends every session of the connection for reason: each gets msg as
// its last line and exit status 1. New sessions are refused from now on.
// It returns once every session has ended, or after noticeGrace.
func (c *conn) cutAll(reason, msg string) {
	c.mu.Lock()
	c.cutReason = reason
	sessions := make([]*session, 0, len(c.sessions))
	for s := range c.sessions {
		sessions = append(sessions, s)
	}
	c.mu.Unlock()
	for _, s := range sessions {
		s.cut(reason, msg)
	}
	waitBounded(&c.sessionsLive, noticeGrace)
}

// warnLead is how long before a cut-off of limit a terminal user is warned:
// warnBefore, but never more than half the limit. Without that cap a limit
// shorter than warnBefore (an idle timeout of 30s against the default
// minute) would warn at the very start of a session, and again at once
// after every keystroke that clears a warning.
func warnLead(limit, warnBefore time.Duration) time.Duration {
	return min(warnBefore, limit/2)
}
