package sshfront

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/scheduler"
)

// TestShortIdleTimeoutWarnsAtHalf covers an idle timeout shorter than the
// warning lead (a minute): the warning comes at half the timeout, not at
// login, and a keystroke after it does not trigger a fresh warning at once.
func TestShortIdleTimeoutWarnsAtHalf(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, nil, &fakeBackend{
			settings: scheduler.Settings{IdleTimeout: 20 * time.Second},
			run:      blockingRun,
		})
		out, stdin, ended := b.idleShell(t, "alice")
		warnings := func() int { return strings.Count(out.String(), "for inactivity") }

		time.Sleep(5 * time.Second)
		synctest.Wait()
		if warnings() != 0 {
			t.Fatalf("warned at login for a 20s idle timeout: %q", out.String())
		}
		time.Sleep(7 * time.Second) // 12s: past half the timeout
		synctest.Wait()
		if got := strings.Count(out.String(), "will be closed in 10s for inactivity"); got != 1 {
			t.Fatalf("want one warning 10s before the cut-off, got %q", out.String())
		}
		if _, err := stdin.Write([]byte("x")); err != nil { // the user comes back
			t.Fatal(err)
		}
		time.Sleep(time.Second) // 13s
		synctest.Wait()
		if warnings() != 1 {
			t.Fatalf("a keystroke set off a new warning at once: %q", out.String())
		}
		time.Sleep(10 * time.Second) // 23s: idle 11s since the keystroke
		synctest.Wait()
		if warnings() != 2 {
			t.Fatalf("want a second warning half a timeout after the keystroke, got %q", out.String())
		}
		time.Sleep(10 * time.Second) // 33s: idle 21s
		synctest.Wait()
		select {
		case err := <-ended:
			if code := exitCode(t, err); code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
		default:
			t.Fatalf("session not ended after the idle timeout")
		}
		if got := out.String(); !strings.HasSuffix(got, "no activity for 20s, closing this session. Goodbye.\r\n") {
			t.Fatalf("terminal output %q: want the goodbye line last", got)
		}
		b.stop()
	})
}

func TestWarnLead(t *testing.T) {
	for _, c := range []struct{ limit, before, want time.Duration }{
		{10 * time.Minute, time.Minute, time.Minute},
		{2 * time.Minute, time.Minute, time.Minute},
		{30 * time.Second, time.Minute, 15 * time.Second},
		{5 * time.Second, time.Minute, 2500 * time.Millisecond},
	} {
		if got := warnLead(c.limit, c.before); got != c.want {
			t.Errorf("warnLead(%v, %v) = %v, want %v", c.limit, c.before, got, c.want)
		}
	}
}

// idleShell opens a terminal shell session for user and returns its output,
// its stdin and a channel that receives the session's end, for the idle
// timeout tests.
func (b *bubble) idleShell(t *testing.T, user string) (*syncBuffer, io.WriteCloser, <-chan error) {
	t.Helper()
	sess, err := b.client(user).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	sess.Stdout = out
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("xterm", 24, 80, nil); err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- sess.Wait() }()
	return out, stdin, ended
}

// connClosed returns a channel closed when the client's connection ends.
func connClosed(c *ssh.Client) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		_ = c.Wait()
		close(done)
	}()
	return done
}

// isClosed reports whether done is closed, after every goroutine of the
// bubble has settled.
func isClosed(done <-chan struct{}) bool {
	synctest.Wait()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// TestIdleTimeoutClosesConnectionWithoutSession is ssh -N: a connection
// that opens no session holds its pod, so the idle timeout must close it.
func TestIdleTimeoutClosesConnectionWithoutSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, nil, &fakeBackend{settings: scheduler.Settings{IdleTimeout: 10 * time.Second}})
		c := b.client("alice")
		done := connClosed(c)
		time.Sleep(9 * time.Second)
		if isClosed(done) {
			t.Fatal("connection closed before its idle timeout")
		}
		time.Sleep(2 * time.Second)
		if !isClosed(done) {
			t.Fatal("a connection with no session outlived its idle timeout")
		}
		b.stop()
		if n := b.backend.closedCount(); n != 1 {
			t.Errorf("attachment closed %d times, want 1 (the pod released)", n)
		}
		if !strings.Contains(b.audit.String(), `"cut":"idle_timeout"`) {
			t.Errorf("connection audit line lacks the cut reason: %s", b.audit.String())
		}
	})
}

// TestMaxSessionBoundsConnection: the maximum length counts from the
// connection's start and ends it even while it is busy forwarding.
func TestMaxSessionBoundsConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, nil, &fakeBackend{
			settings: scheduler.Settings{MaxSession: time.Hour, PortForwarding: true},
			dial:     echoDial,
		})
		c := b.client("alice")
		done := connClosed(c)
		fwd, err := c.Dial("tcp", "localhost:8080")
		if err != nil {
			t.Fatal(err)
		}
		stopTyping := keepTyping(fwd, time.Minute)
		defer stopTyping()
		time.Sleep(59 * time.Minute)
		if isClosed(done) {
			t.Fatal("connection closed before its maximum length")
		}
		time.Sleep(2 * time.Minute)
		if !isClosed(done) {
			t.Fatal("a busy forward-only connection outlived its maximum length")
		}
		b.stop()
		if !strings.Contains(b.audit.String(), `"cut":"max_session"`) {
			t.Errorf("connection audit line lacks the cut reason: %s", b.audit.String())
		}
	})
}

// TestForwardedTrafficCountsAsActivity: a connection used only for -L
// stays while bytes move through the forward, and is closed once they
// stop for the idle timeout.
func TestForwardedTrafficCountsAsActivity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, nil, &fakeBackend{
			settings: scheduler.Settings{IdleTimeout: 10 * time.Second, PortForwarding: true},
			dial:     echoDial,
		})
		c := b.client("alice")
		done := connClosed(c)
		fwd, err := c.Dial("tcp", "localhost:8080")
		if err != nil {
			t.Fatal(err)
		}
		stopTyping := keepTyping(fwd, 5*time.Second)
		time.Sleep(time.Minute)
		if isClosed(done) {
			t.Fatal("connection closed although its forward carried traffic")
		}
		stopTyping()
		time.Sleep(11 * time.Second)
		if !isClosed(done) {
			t.Fatal("an idle forward-only connection outlived its idle timeout")
		}
	})
}

// TestConnectionLimitWarnsSessionThenEveryoneLeaves: with a terminal
// session and a forward on one connection, the terminal is warned, both
// end at the cut-off, the session with exit status 1 and the goodbye line.
func TestConnectionLimitWarnsSessionThenEveryoneLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, nil, &fakeBackend{
			settings: scheduler.Settings{MaxSession: 10 * time.Minute, PortForwarding: true},
			run:      blockingRun,
			dial:     echoDial,
		})
		out, _, ended := b.idleShell(t, "alice")
		c := b.client("bob")
		done := connClosed(c)
		if _, err := c.Dial("tcp", "localhost:8080"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(9*time.Minute + 30*time.Second)
		synctest.Wait()
		if got := strings.Count(out.String(), "reaches its maximum length in 1m0s"); got != 1 {
			t.Fatalf("terminal output %q: want one warning", out.String())
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		select {
		case err := <-ended:
			if code := exitCode(t, err); code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
		default:
			t.Fatal("session not ended at the connection's maximum length")
		}
		if !strings.HasSuffix(out.String(), "reached its maximum length of 10m0s. Goodbye.\r\n") {
			t.Fatalf("terminal output %q: want the goodbye line last", out.String())
		}
		if !isClosed(done) {
			t.Fatal("forward-only connection not closed at its maximum length")
		}
	})
}

// echoDial is a Dial that echoes every byte back.
func echoDial(context.Context, string, uint16) (net.Conn, error) {
	server, client := net.Pipe()
	go func() {
		defer server.Close()
		_, _ = io.Copy(server, server)
	}()
	return client, nil
}

// keepTyping writes a byte through w every interval and reads the echo,
// until the returned func is called.
func keepTyping(rw io.ReadWriter, every time.Duration) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1)
		for {
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
			if _, err := rw.Write([]byte("x")); err != nil {
				return
			}
			if _, err := rw.Read(buf); err != nil {
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(stop); <-done }) }
}
