package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

// Config sizes every scenario.
type Config struct {
	Quick bool
	// Warm and Cold are the sequential connection counts; WarmSh is the
	// count of the warm run with /bin/sh as the login shell, WarmBusy of
	// the warm run that does not wait for the pool to settle.
	Warm, Cold, WarmSh, WarmBusy int
	// WarmPool is the warm pool's minimum in the sequential warm runs.
	// Warm and WarmSh connections start on a settled pool (full, every
	// pod Ready with its streams prepared, nothing starting or being
	// deleted); WarmBusy connections start as soon as the pool is nearly
	// full, so they share the node with the pods starting behind them.
	WarmPool int
	// Burst is the number of simultaneous connections.
	Burst int
	// Sweep is the client-go QPS/burst settings tried for the burst.
	Sweep []QPS
	// Sustained: Poisson arrivals at Rate per second for For, each
	// session lasting uniformly SessionMin..SessionMax; the pool starts at
	// PoolMin.
	Rate                   float64
	For                    time.Duration
	SessionMin, SessionMax time.Duration
	SustainedPoolMin       int
	// MemConns connections each holding MemSessions idle shell sessions.
	MemConns, MemSessions int
	// ThroughputMB is the size of each transfer.
	ThroughputMB int
	// RecordMB and RecordKeys size the recording scenario: terminal
	// output per setting, and keystrokes timed.
	RecordMB, RecordKeys int
	// ReservedPool is the pool two replicas share while their footprint
	// and the streams per pod are measured; ReservedBurst the pool, and
	// the burst, spread over both (scenario 9).
	ReservedPool, ReservedBurst int
}

// QPS is one client-go rate limiter setting.
type QPS struct{ QPS, Burst int }

func (q QPS) String() string { return fmt.Sprintf("%d/%d", q.QPS, q.Burst) }

// podgateQPS is podgate's own default client-side rate limit
// (PODGATE_KUBE_QPS/PODGATE_KUBE_BURST); a sweep run below it throttles
// its pool's warm-up as well as its burst.
var podgateQPS = QPS{50, 100}

// DefaultConfig is the full benchmark of issue #6; QuickConfig the reduced
// one for a run under five minutes.
func DefaultConfig() Config {
	return Config{
		Warm: 200, Cold: 30, WarmSh: 50, WarmBusy: 50, WarmPool: 20, Burst: 100,
		Sweep: []QPS{{5, 10}, {20, 40}, {50, 100}, {200, 400}},
		Rate:  3, For: 60 * time.Second, SessionMin: 5 * time.Second, SessionMax: 15 * time.Second,
		SustainedPoolMin: 5, MemConns: 40, MemSessions: 5, ThroughputMB: 200,
		RecordMB: 100, RecordKeys: 300,
		ReservedPool: 100, ReservedBurst: 200,
	}
}

// QuickConfig is DefaultConfig reduced.
func QuickConfig() Config {
	c := DefaultConfig()
	c.Quick = true
	c.Warm, c.Cold, c.WarmSh, c.WarmBusy, c.WarmPool, c.Burst = 20, 10, 5, 20, 10, 20
	c.Sweep = []QPS{{5, 10}, {50, 100}}
	c.For = 20 * time.Second
	c.SustainedPoolMin = 3
	c.MemConns, c.MemSessions = 8, 5
	c.ThroughputMB = 50
	c.RecordMB, c.RecordKeys = 20, 100
	c.ReservedPool, c.ReservedBurst = 10, 20
	return c
}

// Run is one sequential or burst run with its server-side split.
type Run struct {
	Scenario, Label string
	Samples         []Sample
	Phases          []Phase
	// Wall is the run's duration; for a burst, the time until every
	// connection had its prompt.
	Wall time.Duration
	// Throttled counts Kubernetes requests that waited more than 1 ms in
	// client-go's rate limiter during the run; ThrottleWait is their total
	// wait.
	Throttled    float64
	ThrottleWait time.Duration
	QPS          QPS
	// WarmUp, for a burst, is the time from starting podgate to its pool
	// holding Burst idle pods: the node's pod start rate at its best.
	WarmUp time.Duration
	// CPU, for a burst, is the CPU time every process on this machine
	// used from the start of the burst until every attach (prompt and
	// echo) had ended (CPUWall).
	CPU     []CPUUse
	CPUWall time.Duration
	// API is podgate's own count of its API use during the run.
	API APICount
}

// sequential runs n attaches one after another. Before each, gate (when
// set) may wait; that wait is not timed.
func (r *Runner) sequential(ctx context.Context, pg *podgate, scenario string, n int, gate func() error) (Run, error) {
	run := Run{Scenario: scenario, Label: scenario}
	before, err := pg.Scrape(ctx)
	if err != nil {
		return run, err
	}
	t0 := time.Now()
	for i := range n {
		if gate != nil {
			if err := gate(); err != nil {
				return run, err
			}
		}
		s := Sample{Scenario: scenario, Label: scenario, Index: i, Start: time.Since(t0)}
		c, _, err := pg.dialer.Attach(ctx)
		if c != nil {
			s.Timing = c.Timing
			c.Close()
		}
		if err != nil {
			s.Err = err.Error()
			r.Progress.Logf("%s #%d: %v", scenario, i, err)
		}
		run.Samples = append(run.Samples, s)
		r.Progress.Add(1, 1)
	}
	run.Wall = time.Since(t0)
	after, err := pg.Scrape(ctx)
	if err != nil {
		return run, err
	}
	run.Phases = phases(before, after)
	run.Throttled, run.ThrottleWait = throttling(before, after)
	run.API = apiCount(before, after)
	return run, nil
}

// throttling is the client-go rate limiter waits between two scrapes.
func throttling(before, after podgatetest.Metrics) (float64, time.Duration) {
	h := histDelta(before, after, "podgate_kube_rate_limiter_duration_seconds")
	return h.above(0.001), time.Duration(h.sum * float64(time.Second))
}

// WarmRuns are the three runs of scenario 1.
type WarmRuns struct {
	Warm, Sh, Busy Run
}

// Warm is scenario 1: sequential attaches against a warm pool, each on a
// settled pool: the attach a user gets when the pool has done its work
// since the last arrival. A second, shorter run (c.WarmSh connections)
// differs only in the login shell, /bin/sh instead of `/bin/bash -l`, to
// show how much of the attach is the guest shell's own start-up. A third
// (c.WarmBusy) waits only for the pool to be nearly full, so every attach
// runs while replacement pods start and used ones are deleted on the same
// 2 CPUs: the attach under pod churn.
func (r *Runner) Warm(ctx context.Context, c Config) (WarmRuns, error) {
	var out WarmRuns
	ns, del, err := r.namespace(ctx, "warm")
	if err != nil {
		return out, err
	}
	defer del()
	for _, v := range []struct {
		run   *Run
		label string
		n     int
		shell string
		busy  bool
	}{
		{&out.Warm, "warm", c.Warm, "/bin/bash -l", false},
		{&out.Sh, "warm-sh", c.WarmSh, "/bin/sh", false},
		{&out.Busy, "warm-busy", c.WarmBusy, "/bin/bash -l", true},
	} {
		if v.n == 0 {
			continue
		}
		pg, err := r.start(ctx, ns, "warm", c.WarmPool,
			fmt.Sprintf("PODGATE_POOL_MIN=%d", c.WarmPool), "PODGATE_POOL_MAX=250", "PODGATE_SHELL="+v.shell)
		if err != nil {
			return out, err
		}
		r.Progress.Step(fmt.Sprintf("%s sequential (%d, shell %s)", v.label, v.n, v.shell), v.n)
		gate := func() error { return r.waitSettled(ctx, pg, ns, c.WarmPool, 0, 2*time.Minute) }
		if v.busy {
			if err := r.waitSettled(ctx, pg, ns, c.WarmPool, 0, 2*time.Minute); err != nil {
				pg.stop()
				return out, err
			}
			gate = func() error { return pg.waitIdle(ctx, warmGate(c), 2*time.Minute) }
		}
		*v.run, err = r.sequential(ctx, pg, v.label, v.n, gate)
		pg.stop()
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// Cold is scenario 2: the same with no warm pool, a pod created per
// connection when it arrives (PODGATE_POOL_MIN=0, PODGATE_POOL_GROW=false).
func (r *Runner) Cold(ctx context.Context, c Config) (Run, error) {
	ns, del, err := r.namespace(ctx, "cold")
	if err != nil {
		return Run{}, err
	}
	defer del()
	pg, err := r.start(ctx, ns, "cold", -1, "PODGATE_POOL_MIN=0", "PODGATE_POOL_GROW=false", "PODGATE_POOL_MAX=250")
	if err != nil {
		return Run{}, err
	}
	defer pg.stop()
	r.Progress.Step(fmt.Sprintf("cold sequential (%d)", c.Cold), c.Cold)
	return r.sequential(ctx, pg, "cold", c.Cold, nil)
}

// Sweep is scenarios 3 and 4: c.Burst simultaneous connections against a
// pool pre-warmed to c.Burst, once per QPS/burst setting. One namespace
// serves every setting; each setting gets a fresh podgate that warms the
// pool back to c.Burst before its burst.
func (r *Runner) Sweep(ctx context.Context, c Config) ([]Run, error) {
	ns, del, err := r.namespace(ctx, "burst")
	if err != nil {
		return nil, err
	}
	defer del()
	var runs []Run
	for _, q := range c.Sweep {
		r.Progress.Step(fmt.Sprintf("burst %d at QPS/burst %s: warming", c.Burst, q), 0)
		warmStart := time.Now()
		pg, err := r.start(ctx, ns, "burst", c.Burst,
			fmt.Sprintf("PODGATE_POOL_MIN=%d", c.Burst), fmt.Sprintf("PODGATE_POOL_MAX=%d", 2*c.Burst+10),
			fmt.Sprintf("PODGATE_KUBE_QPS=%d", q.QPS), fmt.Sprintf("PODGATE_KUBE_BURST=%d", q.Burst), fastWarm)
		if err != nil {
			return runs, err
		}
		warmUp := time.Since(warmStart)
		// Every idle pod's streams prepared, as a user arriving at a
		// warm pool finds them; then the rate limiter's bucket refilled.
		if err := r.waitSettled(ctx, pg, ns, c.Burst, 0, 2*time.Minute); err != nil {
			pg.stop()
			return runs, err
		}
		settle(ctx, 3*time.Second)
		r.Progress.Step(fmt.Sprintf("burst %d at QPS/burst %s", c.Burst, q), c.Burst)
		run, err := r.burst(ctx, pg, c.Burst, q)
		run.WarmUp = warmUp
		pg.stop()
		if err != nil {
			return runs, err
		}
		runs = append(runs, run)
	}
	return runs, nil
}

// burst starts n attaches at once and keeps every connection open until
// all are in (or failed), so that the run is n users arriving together.
func (r *Runner) burst(ctx context.Context, pg *podgate, n int, q QPS) (Run, error) {
	label := "qps " + q.String()
	run := Run{Scenario: "burst", Label: label, QPS: q}
	before, err := pg.Scrape(ctx)
	if err != nil {
		return run, err
	}
	conns := r.attachAtOnce(ctx, []*podgate{pg}, n, &run)
	for _, s := range run.Samples {
		if !s.OK() {
			r.Progress.Logf("burst %s #%d: %s", label, s.Index, s.Err)
		}
	}
	after, err := pg.Scrape(ctx)
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	if err != nil {
		return run, err
	}
	run.Phases = phases(before, after)
	run.Throttled, run.ThrottleWait = throttling(before, after)
	run.API = apiCount(before, after)
	return run, nil
}

// fastWarm lets a pool of a hundred pods warm in about a minute; it is
// used only where the pool is warmed before anything is timed (podgate's
// default is 5 creations in flight).
const fastWarm = "PODGATE_POOL_MAX_CREATING=20"

// warmGate is how many idle pods the busy warm run waits for before each
// connection: the pool nearly full, so that a couple of replacement pods
// start (and take CPU) while an attach is timed.
func warmGate(c Config) int { return max(1, c.WarmPool-2) }

// settle waits d unless ctx ends first.
func settle(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
