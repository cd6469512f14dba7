package sshfront

import (
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

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
