package sshfront

import (
	"context"
	"errors"
	"fmt"
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

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *ssh.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("session ended without exit status: %v", err)
	}
	return ee.ExitStatus()
}

func TestIdleTimeoutWarnsThenEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, nil, &fakeBackend{
			settings: scheduler.Settings{IdleTimeout: 10 * time.Minute},
			run:      blockingRun,
		})
		out, stdin, ended := b.idleShell(t, "alice")

		time.Sleep(8 * time.Minute)
		synctest.Wait()
		if strings.Contains(out.String(), "inactivity") {
			t.Fatalf("warned too early: %q", out.String())
		}
		time.Sleep(90 * time.Second) // 9m30s: inside the warning minute
		synctest.Wait()
		if got := strings.Count(out.String(), "will be closed in 1m0s for inactivity"); got != 1 {
			t.Fatalf("want one warning a minute before the cut-off, got %q", out.String())
		}
		if _, err := stdin.Write([]byte("x")); err != nil { // the user comes back
			t.Fatal(err)
		}
		time.Sleep(8 * time.Minute) // 17m30s: idle only 8 minutes
		synctest.Wait()
		select {
		case err := <-ended:
			t.Fatalf("session ended although the user typed: %v", err)
		default:
		}
		time.Sleep(3 * time.Minute) // past 19m30s
		synctest.Wait()
		select {
		case err := <-ended:
			if code := exitCode(t, err); code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
		default:
			t.Fatalf("session not ended after the idle timeout")
		}
		got := out.String()
		if strings.Count(got, "for inactivity") != 2 || !strings.HasSuffix(got, "no activity for 10m0s, closing this session. Goodbye.\r\n") {
			t.Fatalf("terminal output %q: want a second warning, then the goodbye line last", got)
		}
		b.stop()
		if !strings.Contains(b.audit.String(), `"cut":"idle_timeout"`) {
			t.Errorf("audit line lacks the cut reason: %s", b.audit.String())
		}
	})
}

func TestMaxSessionWithoutTTY(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, nil, &fakeBackend{
			settings: scheduler.Settings{MaxSession: time.Hour},
			run:      blockingRun,
		})
		sess, err := b.client("alice").NewSession()
		if err != nil {
			t.Fatal(err)
		}
		stdout, stderr := &syncBuffer{}, &syncBuffer{}
		sess.Stdout, sess.Stderr = stdout, stderr
		start := time.Now()
		err = sess.Run("long-job")
		if code := exitCode(t, err); code != 1 {
			t.Fatalf("exit code %d, want 1", code)
		}
		if d := time.Since(start); d != time.Hour {
			t.Fatalf("session cut after %v, want exactly 1h of fake time", d)
		}
		if stdout.String() != "" || stderr.String() != "podgate: this session reached its maximum length of 1h0m0s. Goodbye.\n" {
			t.Fatalf("stdout %q stderr %q: no warning without a terminal, goodbye on stderr", stdout.String(), stderr.String())
		}
	})
}

func TestPtyWindowChangeSignalAndExitSignal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu  sync.Mutex
			got scheduler.Process
		)
		b := newBubble(t, nil, &fakeBackend{run: func(ctx context.Context, p scheduler.Process) (scheduler.ExitStatus, error) {
			mu.Lock()
			got = p
			mu.Unlock()
			fmt.Fprintf(p.Stdout, "ready\r\n")
			ws := <-p.Resize
			fmt.Fprintf(p.Stdout, "resize %dx%d\r\n", ws.Cols, ws.Rows)
			sig := <-p.Signals
			return scheduler.ExitStatus{Code: 130, Signal: sig}, nil
		}})
		sess, err := b.client("alice").NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out := &syncBuffer{}
		sess.Stdout = out
		modes := ssh.TerminalModes{ssh.ECHO: 0, ssh.TTY_OP_ISPEED: 38400}
		if err := sess.RequestPty(strings.Repeat("x", 65), 0, 5000, modes); err != nil {
			t.Fatal(err)
		}
		if err := sess.Start("vi"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if err := sess.WindowChange(3000, 120); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if err := sess.Signal(ssh.SIGINT); err != nil {
			t.Fatal(err)
		}
		err = sess.Wait()
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.Signal() != "INT" {
			t.Fatalf("Wait = %v, want exit-signal INT", err)
		}
		if out.String() != "ready\r\nresize 120x1000\r\n" {
			t.Fatalf("output %q", out.String())
		}
		mu.Lock()
		defer mu.Unlock()
		want := scheduler.Pty{Term: "xterm", Size: scheduler.WindowSize{Cols: 1000, Rows: 1}}
		if got.Kind != scheduler.KindExec || got.Command != "vi" || got.Pty == nil ||
			got.Pty.Term != want.Term || got.Pty.Size != want.Size || got.Pty.Modes[ssh.ECHO] != 0 || got.Pty.Modes[ssh.TTY_OP_ISPEED] != 38400 {
			t.Fatalf("process %+v pty %+v", got, got.Pty)
		}
	})
}

func TestProgressThenMultiplexedSessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		b := newBubble(t, nil, &fakeBackend{gate: gate, run: func(_ context.Context, p scheduler.Process) (scheduler.ExitStatus, error) {
			fmt.Fprintf(p.Stdout, "ran %s", p.Command)
			return scheduler.ExitStatus{Code: len(p.Command)}, nil
		}})
		c := b.client("alice")
		type result struct {
			out, errOut string
			code        int
		}
		results := make(chan result, 2)
		for _, cmd := range []string{"one", "three"} {
			sess, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			stdout, stderr := &syncBuffer{}, &syncBuffer{}
			sess.Stdout, sess.Stderr = stdout, stderr
			if err := sess.Start(cmd); err != nil {
				t.Fatal(err)
			}
			go func() {
				err := sess.Wait()
				var ee *ssh.ExitError
				code := 0
				if errors.As(err, &ee) {
					code = ee.ExitStatus()
				}
				results <- result{stdout.String(), stderr.String(), code}
			}()
		}
		synctest.Wait()
		if len(results) != 0 {
			t.Fatalf("a session ran before the attachment was made")
		}
		close(gate)
		for range 2 {
			r := <-results
			if r.errOut != "podgate: waiting for a pod (position 1)\n" {
				t.Errorf("stderr %q: want the progress line", r.errOut)
			}
			if r.out != "ran one" && r.out != "ran three" || r.code != len(r.out)-len("ran ") {
				t.Errorf("result %+v", r)
			}
		}
		if n := len(b.backend.attached()); n != 1 {
			t.Fatalf("Attach called %d times; sessions of one connection share it", n)
		}
		c.Close()
		b.stop()
		if b.backend.closedCount() != 1 {
			t.Fatalf("attachment closed %d times, want 1", b.backend.closedCount())
		}
	})
}

func TestHandshakeTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, func(c *Config) { c.HandshakeTimeout = 30 * time.Second }, &fakeBackend{})
		nc, err := b.ln.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		closed := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, nc) // a client that never speaks
			close(closed)
		}()
		time.Sleep(29 * time.Second)
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("closed before the handshake timeout")
		default:
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		select {
		case <-closed:
		default:
			t.Fatal("silent client still connected after the handshake timeout")
		}
	})
}

func TestPreAuthLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, func(c *Config) { c.MaxPreAuth = 1 }, &fakeBackend{})
		first, err := b.ln.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		go func() { _, _ = io.Copy(io.Discard, first) }()
		synctest.Wait()
		second, err := b.ln.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer second.Close()
		got, _ := io.ReadAll(second)
		if string(got) != "podgate: too many connections, please try again later\r\n" {
			t.Fatalf("second connection got %q", got)
		}
		if v := metricValue(t, b.reg, "podgate_refused_total", "reason", refusedMaxPreAuth); v != 1 {
			t.Fatalf("refused_total{reason=max_preauth} = %v", v)
		}
	})
}

// freezableConn stops delivering bytes to the client while frozen, like a
// client whose network vanished.
type freezableConn struct {
	net.Conn
	frozen  chan struct{} // closed when frozen
	release chan struct{} // closed at the end of the test
}

func (f *freezableConn) Read(p []byte) (int, error) {
	select {
	case <-f.frozen:
		<-f.release // the server must give up on us before this
		return 0, net.ErrClosed
	default:
	}
	return f.Conn.Read(p)
}

func TestKeepaliveClosesDeadConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, func(c *Config) {
			c.KeepaliveInterval = 10 * time.Second
			c.KeepaliveMaxMissed = 3
		}, &fakeBackend{})
		nc, err := b.ln.Dial()
		if err != nil {
			t.Fatal(err)
		}
		fc := &freezableConn{Conn: nc, frozen: make(chan struct{}), release: make(chan struct{})}
		defer close(fc.release)
		b.clientOver(fc, "alice")
		active := func() float64 { return metricValue(t, b.reg, "podgate_connections_active") }

		time.Sleep(time.Minute) // a live client answers every keepalive
		synctest.Wait()
		if active() != 1 {
			t.Fatalf("live client was disconnected")
		}
		close(fc.frozen)
		// A read already in flight may still answer one request; after
		// that, three ticks without a reply close the connection.
		time.Sleep(60 * time.Second)
		synctest.Wait()
		if active() != 0 {
			t.Fatalf("dead client still connected after 3 missed keepalives")
		}
	})
}

func TestShutdownNotifiesAndCuts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, nil, &fakeBackend{run: blockingRun})
		sess, err := b.client("alice").NewSession()
		if err != nil {
			t.Fatal(err)
		}
		stderr := &syncBuffer{}
		sess.Stderr = stderr
		if err := sess.Start("sleep infinity"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		shutdown := make(chan error, 1)
		go func() { shutdown <- b.srv.Shutdown(ctx) }()
		synctest.Wait()
		if !strings.Contains(stderr.String(), "podgate: the server is restarting") {
			t.Fatalf("user not told about the shutdown: %q", stderr.String())
		}
		if len(shutdown) != 0 {
			t.Fatalf("Shutdown returned while a session was running")
		}
		if err := <-shutdown; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want deadline exceeded after cutting the session", err)
		}
		if b.backend.closedCount() != 1 {
			t.Fatalf("attachment not closed after shutdown")
		}
	})
}

func TestRefusedRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, nil, &fakeBackend{run: blockingRun})
		c := b.client("alice")
		if ok, _, _ := c.SendRequest("tcpip-forward", true, ssh.Marshal(struct {
			Addr string
			Port uint32
		}{"0.0.0.0", 8080})); ok {
			t.Errorf("tcpip-forward accepted")
		}
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range []string{"x11-req", "auth-agent-req@openssh.com", "signal"} {
			if ok, _ := sess.SendRequest(typ, true, nil); ok {
				t.Errorf("%s accepted", typ)
			}
		}
		if err := sess.Setenv("BAD NAME", "x"); err == nil {
			t.Errorf("env with an invalid name accepted")
		}
		if err := sess.Start("x"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := sess.SendRequest("exec", true, ssh.Marshal(struct{ C string }{"y"})); ok {
			t.Errorf("second exec on one channel accepted")
		}
		if !strings.Contains(b.logs.String(), "refused remote port forwarding") {
			t.Errorf("refused -R not logged")
		}
	})
}

func TestBadLoginNamesRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, nil, &fakeBackend{})
		for _, login := range []string{"\u212Aate", "../etc", "-rf", strings.Repeat("a", 65), "a\x00b", "bob+"} {
			nc, err := b.ln.Dial()
			if err != nil {
				t.Fatal(err)
			}
			_, _, _, err = ssh.NewClientConn(nc, "pipe", &ssh.ClientConfig{
				User:            login,
				Auth:            []ssh.AuthMethod{ssh.Password("x")},
				HostKeyCallback: ssh.InsecureIgnoreHostKey(),
			})
			if err == nil {
				t.Errorf("login %q accepted", login)
			}
			nc.Close()
		}
		if len(b.backend.attached()) != 0 {
			t.Fatalf("backend reached with an invalid login")
		}
		if n := strings.Count(b.logs.String(), "refused login name"); n != 6 {
			t.Fatalf("%d refusal log lines, want one per connection", n)
		}
	})
}

func TestAuditLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, nil, &fakeBackend{run: func(_ context.Context, p scheduler.Process) (scheduler.ExitStatus, error) {
			return scheduler.ExitStatus{Code: 3}, nil
		}})
		c := b.client("alice+gpu")
		sess, _ := c.NewSession()
		_ = sess.Run("make test")
		c.Close()
		b.stop()
		a := b.audit.String()
		for _, want := range []string{`"msg":"session"`, `"command":"make test"`, `"exit_code":3`, `"msg":"connection"`, `"user":"alice"`, `"profile":"gpu"`, `"pod":"pod-1"`} {
			if !strings.Contains(a, want) {
				t.Errorf("audit log lacks %s:\n%s", want, a)
			}
		}
	})
}

func TestDemoRefusesNonLoopback(t *testing.T) {
	b := newBubble(t, nil, &fakeBackend{})
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := b.srv.Serve(context.Background(), ln); err == nil || !strings.Contains(err.Error(), "non-loopback") {
		t.Fatalf("Serve in demo mode on 0.0.0.0 = %v", err)
	}
}
