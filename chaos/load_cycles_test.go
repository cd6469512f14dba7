package chaos

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/pool"
)

// cycleKind is one way a client comes and goes.
type cycleKind int

const (
	cycleClean        cycleKind = iota // exec "echo", exit, close
	cycleFresh                         // the same, as a user never seen before (a fresh pod)
	cycleResetSession                  // TCP RST while a command runs
	cycleKillSSH                       // OpenSSH client SIGKILLed while a command runs
	cycleCutHandshake                  // TCP RST at some byte of the handshake
	nCycleKinds
)

var cycleNames = [nCycleKinds]string{"clean exit", "clean exit, fresh user", "TCP reset mid-session", "OpenSSH killed mid-session", "TCP reset mid-handshake"}

// cycleMix picks the kind of cycle i: of every 20, 8 clean, 3 reset
// mid-session, 2 OpenSSH killed mid-session, 7 cut mid-handshake. Every
// freshEvery-th cycle is a clean one by a new user instead.
func cycleMix(i, freshEvery int) cycleKind {
	if freshEvery > 0 && i%freshEvery == freshEvery/2 {
		return cycleFresh
	}
	switch r := i % 20; {
	case r < 8:
		return cycleClean
	case r < 11:
		return cycleResetSession
	case r < 13:
		return cycleKillSSH
	default:
		return cycleCutHandshake
	}
}

// cutConn resets its TCP connection once more than limit bytes have been
// written, so a client dies at a chosen point of the handshake.
type cutConn struct {
	*net.TCPConn
	limit, written int
}

func (c *cutConn) Write(p []byte) (int, error) {
	if c.written+len(p) > c.limit {
		n, _ := c.TCPConn.Write(p[:max(c.limit-c.written, 0)])
		resetTCP(c.TCPConn)
		return n, syscall.ECONNRESET
	}
	c.written += len(p)
	return c.TCPConn.Write(p)
}

// TestLoadConnectCycles connects and disconnects many times, mixing clean
// exits, abrupt TCP resets, OpenSSH clients killed mid-session and clients
// cut mid-handshake, and shows that no pod leaks, no claimed pod outlives
// its connection and reconnect window, and goroutines and fds return to
// their baseline. Most authenticated cycles reuse a few identities, which
// the reconnect window brings back to their own pod (a pod takes about a
// second to start here, so 10 000 fresh pods would not fit); a share are
// users never seen before, who get fresh pods. Go clients do the volume,
// OpenSSH the killed-mid-session share.
func TestLoadConnectCycles(t *testing.T) {
	env := kubetest.New(t)
	sc := NewScenario(t, "load", "connect/disconnect cycles")
	cycles := Size(300, 10000)
	workers := Size(6, 16)
	fresh := Size(10, 100)
	window := time.Duration(Size(10, 20)) * time.Second
	freshEvery := cycles / fresh

	users := []string{}
	for w := range workers {
		users = append(users, fmt.Sprintf("w%d", w))
	}
	for f := range fresh {
		users = append(users, fmt.Sprintf("f%d", f))
	}
	// Pool max equal to min keeps the idle target fixed (it bounds idle
	// pods, not claimed ones), so the goroutines and fds of warm pods with
	// their prepared streams are the same at the end as at the baseline.
	const poolMin = 4
	g := startGate(t, env, gateOpts{Users: users, WaitIdle: poolMin, Env: []string{
		fmt.Sprintf("PODGATE_POOL_MIN=%d", poolMin), fmt.Sprintf("PODGATE_POOL_MAX=%d", poolMin),
		"PODGATE_POD_CPU_REQUEST=10m", "PODGATE_POD_MEMORY_REQUEST=32Mi",
		"PODGATE_MAX_CONNECTIONS_PER_IP=0", "PODGATE_MAX_CONNECTIONS_PER_USER=0", "PODGATE_MAX_PODS_PER_USER=0",
		"PODGATE_RECONNECT_WINDOW=" + window.String(), "PODGATE_HANDSHAKE_TIMEOUT=5s", "PODGATE_MAX_WAIT=2m",
	}})
	pw := watchPods(t, env)
	base := g.steady(time.Minute)
	sc.Figure("baseline (warm pool, no connections)", "%v; pods %v", base, pw.counts())

	var (
		next     atomic.Int64
		counts   [nCycleKinds]atomic.Int64
		failMu   sync.Mutex
		failures []string
		podsMu   sync.Mutex
		podsOf   = map[string]map[string]bool{} // user → pods its clean cycles ran in
	)
	fail := func(k cycleKind, format string, args ...any) {
		failMu.Lock()
		defer failMu.Unlock()
		failures = append(failures, cycleNames[k]+": "+fmt.Sprintf(format, args...))
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			user := fmt.Sprintf("w%d", w)
			for {
				i := int(next.Add(1)) - 1
				if i >= cycles {
					return
				}
				k := cycleMix(i, freshEvery)
				counts[k].Add(1)
				u := user
				if k == cycleFresh {
					u = fmt.Sprintf("f%d", min(i/freshEvery, fresh-1))
				}
				pod, err := g.cycle(k, u, i)
				if err != nil {
					fail(k, "cycle %d as %s: %v", i, u, err)
					continue
				}
				if pod != "" {
					podsMu.Lock()
					if podsOf[u] == nil {
						podsOf[u] = map[string]bool{}
					}
					podsOf[u][pod] = true
					podsMu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var mix []string
	for k := range nCycleKinds {
		mix = append(mix, fmt.Sprintf("%d %s", counts[k].Load(), cycleNames[k]))
	}
	sc.Figure("cycles", "%d in %.0f s by %d workers (%.1f/s): %s", cycles, elapsed.Seconds(), workers, float64(cycles)/elapsed.Seconds(), strings.Join(mix, ", "))
	podsPerWorker := 0
	for w := range workers {
		podsPerWorker += len(podsOf[fmt.Sprintf("w%d", w)])
	}
	sc.Figure("reconnect window", "%d reused identities ran their clean cycles in %d pods in all (window %v); a reconnect that arrives before podgate has torn down the previous connection (a mid-session cut takes a kubelet round trip to hang up) gets a new pod", workers, podsPerWorker, window)
	sc.Figure("claims", "hit %v, miss %v, conflict %v, error %v",
		g.metric("podgate_claims_total", "result", "hit"), g.metric("podgate_claims_total", "result", "miss"),
		g.metric("podgate_claims_total", "result", "conflict"), g.metric("podgate_claims_total", "result", "error"))
	sc.Check(len(failures) == 0, "every clean cycle ran its command and every mid-session cycle had its command running when cut", "%d failures %v", len(failures), firstN(failures, 5))
	sc.Check(g.exitedNot(), "podgate still running", "exited: %v", !g.exitedNot())

	// With every client gone, the only claimed pods are reconnect-window
	// pods, at most one per identity that connected.
	atEnd := pw.counts()
	identities := workers + fresh
	sc.Check(atEnd[pool.StateClaimed]+atEnd[pool.StateParked] <= identities, "claimed and parked pods right after the cycles are at most one per identity", "%v, %d identities", atEnd, identities)
	for _, p := range pw.pods() {
		if st := p.Labels[pool.LabelState]; (st == pool.StateClaimed || st == pool.StateParked) && p.DeletionTimestamp == nil {
			u := p.Annotations[pool.AnnUser]
			if !(strings.HasPrefix(u, "w") || strings.HasPrefix(u, "f")) {
				sc.Check(false, "every claimed pod belongs to a test identity", "pod %s user %q", p.Name, u)
			}
		}
	}

	// After the reconnect window (plus a reap interval), nothing is
	// claimed, nothing is stuck, and the pool is back at its target.
	cleared := pw.waitFor(window+90*time.Second, func(c podCounts) bool {
		return c[pool.StateClaimed] == 0 && c[pool.StateParked] == 0 && c[pool.StateReleased] == 0 && c["terminating"] == 0 && c["other"] == 0 && c[pool.StateIdle] >= poolMin
	})
	final := pw.counts()
	sc.Check(cleared, "0 leaked pods: after the reconnect window no pod is claimed, parked, released or stuck, and the pool is at target", "%v (target %d)", final, poolMin)
	sc.Check(final[pool.StateIdle] <= poolMin, "idle pods within the pool maximum", "%d", final[pool.StateIdle])
	sc.Check(g.metric("podgate_connections_active") == 0 && g.metric("podgate_sessions_active") == 0,
		"no connection or session left open in podgate", "connections %v, sessions %v", g.metric("podgate_connections_active"), g.metric("podgate_sessions_active"))

	g.waitIdle(poolMin, time.Minute)
	g.steady(time.Minute)
	end := g.settle(base, 5, 3, time.Minute)
	sc.Figure("goroutines", "%d → %d", base.Goroutines, end.Goroutines)
	sc.Figure("fds", "%d → %d", base.FDs, end.FDs)
	sc.Figure("RSS MiB", "%.1f → %.1f", base.RSSMiB, end.RSSMiB)
	if !sc.Check(base.within(end, 5, 3),
		"goroutines and fds back to baseline", "before %v, after %v", base, end) {
		t.Logf("goroutines by creator:\n%s", g.dumpGoroutines())
	}
}

// exitedNot reports whether podgate is still running.
func (g *gate) exitedNot() bool {
	select {
	case <-g.Exited():
		return false
	default:
		return true
	}
}

// cycle runs one connect/disconnect cycle of kind k as user and returns
// the pod a clean cycle ran in. An error means podgate did not behave:
// cycles that cut themselves short expect nothing from the server.
func (g *gate) cycle(k cycleKind, user string, i int) (string, error) {
	switch k {
	case cycleClean, cycleFresh:
		c, _, err := g.dial(user, user)
		if err != nil {
			return "", err
		}
		defer c.Close()
		out, code, err := output(c, "echo ok $HOSTNAME")
		f := strings.Fields(out)
		if err != nil || code != 0 || len(f) != 2 || f[0] != "ok" {
			return "", fmt.Errorf("got %q, exit %d, %v", out, code, err)
		}
		return f[1], nil

	case cycleResetSession:
		c, nc, err := g.dial(user, user)
		if err != nil {
			return "", err
		}
		defer c.Close()
		s, err := c.NewSession()
		if err != nil {
			return "", err
		}
		out, err := s.StdoutPipe()
		if err != nil {
			return "", err
		}
		if err := s.Start("echo started; sleep 60"); err != nil {
			return "", err
		}
		line, err := readLine(out, 60*time.Second)
		resetTCP(nc)
		if line != "started" {
			return "", fmt.Errorf("command not running when cut: %q %v", line, err)
		}
		return "", nil

	case cycleKillSSH:
		cmd := g.SSH(user, user, "echo started; sleep 60")
		out, err := cmd.StdoutPipe()
		if err != nil {
			return "", err
		}
		if err := cmd.Start(); err != nil {
			return "", err
		}
		line, rerr := readLine(out, 60*time.Second)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if line != "started" {
			return "", fmt.Errorf("command not running when killed: %q %v", line, rerr)
		}
		return "", nil

	case cycleCutHandshake:
		nc, err := net.DialTimeout("tcp", g.Addr(), 10*time.Second)
		if err != nil {
			return "", err
		}
		// 0: before the version line; 20: inside it; 600: during key
		// exchange; 1400: around the service request and authentication.
		cut := &cutConn{TCPConn: nc.(*net.TCPConn), limit: []int{0, 20, 600, 1400}[i%4]}
		_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
		cfg := clientConfig(user, ssh.PublicKeys(g.signer(user)))
		if c, _, _, err := ssh.NewClientConn(cut, g.Addr(), cfg); err == nil {
			c.Close() // the handshake fitted under the cut; still a cycle
		}
		resetTCP(cut.TCPConn)
		return "", nil
	}
	return "", fmt.Errorf("unknown cycle kind %d", k)
}

// readLine reads one line from r, at most timeout.
func readLine(r interface{ Read([]byte) (int, error) }, timeout time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := bufio.NewReader(r).ReadString('\n')
		ch <- res{strings.TrimSpace(s), err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-time.After(timeout):
		return "", fmt.Errorf("no line within %v", timeout)
	}
}
