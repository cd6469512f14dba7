package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/pool"
)

// idleSession is one held shell session: commands go in on stdin, answers
// come back on stdout.
type idleSession struct {
	s   *ssh.Session
	in  io.WriteCloser
	out *bufio.Reader
}

// ask writes "echo token" and waits for the token line, at most timeout.
// On a timeout the reading goroutine stays blocked until the session is
// closed at the end of the test.
func (is *idleSession) ask(token string, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() {
		if _, err := fmt.Fprintf(is.in, "echo %s\n", token); err != nil {
			done <- err
			return
		}
		for {
			line, err := is.out.ReadString('\n')
			if strings.TrimSpace(line) == token {
				done <- nil
				return
			}
			if err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("no answer to %q within %v", token, timeout)
	}
}

// TestLoadIdleSessions holds many idle shell sessions, multiplexed over
// fewer connections (in connection mode each connection costs a pod), and
// shows podgate's goroutines, fds and RSS flat through the hold and every
// session still answering at the end. Clients are golang.org/x/crypto/ssh,
// since hundreds of OpenSSH processes would measure the test machine.
func TestLoadIdleSessions(t *testing.T) {
	env := kubetest.New(t)
	sc := NewScenario(t, "load", "idle sessions held")
	conns := Size(5, 50)
	perConn := 10
	hold := time.Duration(Size(20, 300)) * time.Second
	every := time.Duration(Size(2, 10)) * time.Second
	total := conns * perConn

	g := startGate(t, env, gateOpts{Users: []string{"load"}, WaitIdle: conns, Env: []string{
		fmt.Sprintf("PODGATE_POOL_MIN=%d", conns), fmt.Sprintf("PODGATE_POOL_MAX=%d", conns+2),
		"PODGATE_POD_CPU_REQUEST=10m", "PODGATE_POD_MEMORY_REQUEST=32Mi",
		"PODGATE_MAX_CONNECTIONS_PER_IP=0", "PODGATE_MAX_CONNECTIONS_PER_USER=0", "PODGATE_MAX_PODS_PER_USER=0",
		"PODGATE_MAX_WAIT=2m",
	}})
	sc.Figure("shape", "%d connections × %d sessions = %d idle shell sessions, held %v (Go clients; PODGATE_MAX_CONNECTIONS_PER_IP/PER_USER and MAX_PODS_PER_USER=0, pod CPU request 10m)", conns, perConn, total, hold)
	ctx := context.Background()
	base := g.steady(time.Minute)
	sc.Figure("baseline (warm pool, no connections)", "%v", base)

	// Ramp: connections in parallel, sessions of a connection in parallel.
	sessions := make([][]*idleSession, conns)
	clients := make([]*ssh.Client, conns)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		rampErr []string
	)
	sem := make(chan struct{}, 20)
	rampStart := time.Now()
	for i := range conns {
		wg.Go(func() {
			c, _, err := g.dial("load", "load")
			if err != nil {
				mu.Lock()
				rampErr = append(rampErr, fmt.Sprintf("conn %d: %v", i, err))
				mu.Unlock()
				return
			}
			clients[i] = c
			sessions[i] = make([]*idleSession, perConn)
			var swg sync.WaitGroup
			for j := range perConn {
				swg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					is, err := openIdle(c, fmt.Sprintf("ready-%d-%d", i, j))
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						rampErr = append(rampErr, fmt.Sprintf("session %d/%d: %v", i, j, err))
						return
					}
					sessions[i][j] = is
				})
			}
			swg.Wait()
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	})
	sc.Figure("ramp", "%d sessions open in %.1f s", total-len(rampErr), time.Since(rampStart).Seconds())
	if !sc.Check(len(rampErr) == 0, fmt.Sprintf("all %d sessions open and answering", total), "%d failed %v", len(rampErr), firstN(rampErr, 5)) {
		return
	}

	// The ramp ends when the pool has replaced the pods the connections
	// took: each warm pod holds a prepared exec stream, so its goroutines
	// and fds belong to the steady state.
	g.waitIdle(conns, 3*time.Minute)
	refilled := g.steady(time.Minute)
	sc.Figure("pool refilled after ramp", "%v", refilled)

	// Hold, sampling the process.
	var series []procSample
	start := time.Now()
	for time.Since(start) < hold {
		s, err := g.sample(ctx)
		if err != nil {
			t.Fatalf("sampling podgate: %v", err)
		}
		s.At = time.Since(start).Round(time.Second)
		series = append(series, s)
		time.Sleep(every)
	}
	s, err := g.sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.At = time.Since(start).Round(time.Second)
	series = append(series, s)
	first, last := series[0], series[len(series)-1]
	maxG, maxFD, maxRSS := 0, 0, 0.0
	var gs, fds, rss []string
	for _, s := range series {
		maxG, maxFD, maxRSS = max(maxG, s.Goroutines), max(maxFD, s.FDs), max(maxRSS, s.RSSMiB)
		gs = append(gs, fmt.Sprint(s.Goroutines))
		fds = append(fds, fmt.Sprint(s.FDs))
		rss = append(rss, fmt.Sprintf("%.0f", s.RSSMiB))
	}
	sc.Figure("goroutines through the hold", "%s (every %v)", strings.Join(gs, " "), every)
	sc.Figure("fds through the hold", "%s", strings.Join(fds, " "))
	sc.Figure("RSS MiB through the hold", "%s", strings.Join(rss, " "))
	sc.Figure("per session after ramp", "%.1f goroutines, %.2f fds",
		float64(first.Goroutines-base.Goroutines)/float64(total), float64(first.FDs-base.FDs)/float64(total))
	// Flat: idle sessions start no work, so nothing may grow with time.
	// Keepalives, scrapes and the pool's own loops move a few goroutines
	// and fds, hence the small allowance; a per-session leak would add at
	// least one per session per keepalive interval.
	sc.Check(maxG <= first.Goroutines+10, "goroutines flat during the hold", "%d after ramp, max %d, last %d", first.Goroutines, maxG, last.Goroutines)
	sc.Check(maxFD <= first.FDs+5, "fds flat during the hold", "%d after ramp, max %d, last %d", first.FDs, maxFD, last.FDs)
	sc.Check(last.RSSMiB <= first.RSSMiB*1.25+16, "RSS flat during the hold (within GC noise)", "%.1f MiB after ramp, max %.1f, last %.1f", first.RSSMiB, maxRSS, last.RSSMiB)

	// Every session still answers.
	var answered, failed []string
	var amu sync.Mutex
	for i := range conns {
		for j := range perConn {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				err := sessions[i][j].ask(fmt.Sprintf("alive-%d-%d", i, j), 60*time.Second)
				amu.Lock()
				defer amu.Unlock()
				if err != nil {
					failed = append(failed, fmt.Sprintf("%d/%d: %v", i, j, err))
				} else {
					answered = append(answered, "")
				}
			})
		}
	}
	wg.Wait()
	sc.Check(len(answered) == total, "every session still answers after the hold", "%d of %d answered; failures %v", len(answered), total, firstN(failed, 5))

	// Hang up and show the process returns to where it started.
	for _, c := range clients {
		c.Close()
	}
	pw := watchPods(t, env)
	sc.Check(pw.waitFor(2*time.Minute, func(c podCounts) bool { return c[pool.StateClaimed] == 0 && c["terminating"] == 0 }),
		"every claimed pod deleted after hang-up", "%v", pw.counts())
	g.waitIdle(conns, 2*time.Minute)
	g.steady(time.Minute)
	end := g.settle(base, 5, 3, 60*time.Second)
	sc.Figure("after hang-up", "%v (baseline %v)", end, base)
	if !sc.Check(base.within(end, 5, 3),
		"goroutines and fds back to baseline after hang-up", "before %v, after %v", base, end) {
		t.Logf("goroutines by function:\n%s", g.dumpGoroutines())
	}
}

// openIdle starts a shell session without a terminal and checks it answers.
func openIdle(c *ssh.Client, token string) (*idleSession, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, err
	}
	in, err := s.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := s.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.Shell(); err != nil {
		return nil, err
	}
	is := &idleSession{s: s, in: in, out: bufio.NewReader(out)}
	if err := is.ask(token, 2*time.Minute); err != nil {
		s.Close()
		return nil, err
	}
	return is, nil
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
