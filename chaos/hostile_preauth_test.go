package chaos

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/internal/testenv/kubetest"
)

// closedAfter reads from c until the server closes it (or until limit) and
// returns how long that took from start and what was read.
func closedAfter(c net.Conn, start time.Time, limit time.Duration) (time.Duration, string, bool) {
	_ = c.SetReadDeadline(start.Add(limit))
	b, err := io.ReadAll(io.LimitReader(c, 1<<16))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return time.Since(start), string(b), false
	}
	return time.Since(start), string(b), true
}

// TestHostilePreauth sends raw TCP garbage, a slowloris handshake, a client
// that finishes key exchange and never authenticates, and a flood of
// connections that hold the pre-auth phase, and checks that each is cut at
// PODGATE_HANDSHAKE_TIMEOUT (or at once) and that the server never holds
// more than PODGATE_MAX_PREAUTH of them. The clients are raw sockets and
// golang.org/x/crypto/ssh, since OpenSSH cannot misbehave on purpose.
func TestHostilePreauth(t *testing.T) {
	env := kubetest.New(t)
	sc := NewScenario(t, "hostile", "pre-auth abuse: garbage, slowloris, no auth, pre-auth flood")
	const timeout, maxPreauth = 3 * time.Second, 8
	g := startGate(t, env, gateOpts{WaitIdle: 1, Env: []string{
		"PODGATE_POOL_MIN=1", "PODGATE_POOL_MAX=1", "PODGATE_POD_CPU_REQUEST=10m",
		"PODGATE_HANDSHAKE_TIMEOUT=" + timeout.String(), fmt.Sprintf("PODGATE_MAX_PREAUTH=%d", maxPreauth),
		"PODGATE_MAX_CONNECTIONS_PER_IP=0",
	}})
	sc.Figure("settings", "PODGATE_HANDSHAKE_TIMEOUT=%v, PODGATE_MAX_PREAUTH=%d, PODGATE_MAX_CONNECTIONS_PER_IP=0", timeout, maxPreauth)
	base := g.steady(time.Minute)
	sc.Figure("baseline", "%v", base)
	bound := timeout + 3*time.Second

	// Garbage instead of a version line, and garbage after one.
	for _, tc := range []struct {
		name    string
		payload func() []byte
	}{
		{"random bytes", func() []byte { b := make([]byte, 4096); _, _ = rand.Read(b); return b }},
		{"HTTP request", func() []byte { return []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n") }},
		{"version line then a huge packet length", func() []byte {
			return append([]byte("SSH-2.0-evil\r\n"), 0x7f, 0xff, 0xff, 0xff, 0x04, 0x14, 0, 0, 0)
		}},
		{"endless line without newline", func() []byte { return []byte(strings.Repeat("A", 64<<10)) }},
	} {
		c, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, _ = c.Write(tc.payload())
		took, _, closed := closedAfter(c, start, bound+2*time.Second)
		c.Close()
		sc.Check(closed && took <= bound, "garbage ("+tc.name+") is cut by the handshake timeout at the latest", "closed %v after %.1f s", closed, took.Seconds())
	}

	// Slowloris: a version line one byte every 300 ms, never finished.
	c, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stopDrip := make(chan struct{})
	var drip sync.WaitGroup
	drip.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stopDrip:
				return
			case <-time.After(300 * time.Millisecond):
			}
			if _, err := c.Write([]byte{"SSH-2.0-slowloris"[i%17]}); err != nil {
				return
			}
		}
	})
	took, _, closed := closedAfter(c, start, bound+5*time.Second)
	close(stopDrip)
	drip.Wait()
	c.Close()
	sc.Check(closed && took >= timeout-500*time.Millisecond && took <= bound,
		"a slowloris version line is cut at the handshake timeout", "closed %v after %.1f s (timeout %v)", closed, took.Seconds(), timeout)

	// Key exchange done, then the client sits in authentication forever.
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	block := make(chan struct{})
	cut := make(chan error, 1)
	go func() {
		cfg := clientConfig("alice", ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			<-block
			return nil, errors.New("gave up")
		}))
		_, _, _, err := ssh.NewClientConn(&readErrConn{Conn: nc, failed: cut}, g.Addr(), cfg)
		_ = err
	}()
	select {
	case <-cut:
		took = time.Since(start)
		closed = true
	case <-time.After(bound + 5*time.Second):
		took, closed = time.Since(start), false
	}
	close(block)
	nc.Close()
	sc.Check(closed && took >= timeout-500*time.Millisecond && took <= bound,
		"a client that never authenticates is cut at the handshake timeout", "closed %v after %.1f s", closed, took.Seconds())

	// Flood: more connections than MAX_PREAUTH, each holding the pre-auth
	// phase with a version line and nothing more.
	refusedBefore := g.metric("podgate_refused_total", "reason", "max_preauth")
	flood := maxPreauth + 12
	conns := make([]net.Conn, 0, flood)
	start = time.Now()
	for range flood {
		c, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("SSH-2.0-holder\r\n"))
		conns = append(conns, c)
	}
	time.Sleep(500 * time.Millisecond) // let the server accept and refuse
	during, _ := g.sample(t.Context())
	// A real client during the flood: it cannot get a pre-auth slot.
	_, _, legitErr := g.dial("alice", "alice")
	type outcome struct {
		closed bool
		took   time.Duration
		text   string
	}
	outs := make([]outcome, flood)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			took, text, closed := closedAfter(c, start, timeout-time.Second)
			outs[i] = outcome{closed, took, text}
		})
	}
	wg.Wait()
	held, refusedLine := 0, 0
	for _, o := range outs {
		if !o.closed {
			held++
		} else if strings.Contains(o.text, "too many connections") {
			refusedLine++
		}
	}
	refused := g.metric("podgate_refused_total", "reason", "max_preauth") - refusedBefore
	sc.Figure("pre-auth flood", "%d connections: %d held by the server, %d refused with the \"too many connections\" line; fds %d → %d during the flood; refusal counter +%v",
		flood, held, refusedLine, base.FDs, during.FDs, refused)
	sc.Check(held == maxPreauth, "the server holds exactly PODGATE_MAX_PREAUTH pre-auth connections at once", "%d held of %d", held, flood)
	sc.Check(during.FDs <= base.FDs+maxPreauth+2, "the server's fds during the flood are bounded by MAX_PREAUTH", "fds %d → %d", base.FDs, during.FDs)
	sc.Figure("a real login during the flood", "%v (refused while the pre-auth slots are full, like OpenSSH's MaxStartups)", legitErr)
	// The held ones are cut at the handshake timeout.
	for i, c := range conns {
		if outs[i].closed {
			c.Close()
			continue
		}
		wg.Go(func() {
			took, _, closed := closedAfter(c, start, bound+5*time.Second)
			outs[i] = outcome{closed, took, ""}
			c.Close()
		})
	}
	wg.Wait()
	var late []string
	for i, o := range outs {
		if !o.closed || o.took > bound {
			late = append(late, fmt.Sprintf("conn %d: closed %v after %.1f s", i, o.closed, o.took.Seconds()))
		}
	}
	sc.Check(len(late) == 0, "every held pre-auth connection is cut by the handshake timeout", "%v", late)

	// Service resumes and nothing is left behind.
	cl, _, err := g.dial("alice", "alice")
	if err == nil {
		out, code, rerr := output(cl, "echo ok")
		cl.Close()
		sc.Check(rerr == nil && code == 0 && strings.TrimSpace(out) == "ok", "a real login works once the flood is over", "out %q exit %d %v", out, code, rerr)
	} else {
		sc.Check(false, "a real login works once the flood is over", "%v", err)
	}
	g.waitIdle(1, time.Minute)
	end := g.settle(base, 3, 2, 30*time.Second)
	sc.Figure("after", "%v (baseline %v)", end, base)
	if !sc.Check(base.within(end, 3, 2), "goroutines and fds back to baseline", "before %v, after %v", base, end) {
		t.Logf("goroutines by function:\n%s", g.dumpGoroutines())
	}
	sc.Check(g.exitedNot(), "podgate still running", "exited %v", !g.exitedNot())
}

// readErrConn reports the first read error (the server closing) on failed.
type readErrConn struct {
	net.Conn
	once   sync.Once
	failed chan<- error
}

func (c *readErrConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.once.Do(func() { c.failed <- err })
	}
	return n, err
}
