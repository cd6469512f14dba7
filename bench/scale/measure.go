package scale

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/podgate/podgate/bench"
	"github.com/podgate/podgate/internal/testenv/localcluster"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

// measurer takes the measurements of one run against its replicas.
type measurer struct {
	kube kubernetes.Interface
	ns   string
	reps []*replica
	log  func(format string, args ...any)
	// next is the replica the next sequential login goes to.
	next int
}

// size grows the pool to size and measures it: the fill, a quiet
// baseline, then cfg.Logins sequential logins spread over the replicas
// and the pool's refill after them.
func (m *measurer) size(ctx context.Context, cfg Config, size int) (Size, error) {
	s := Size{Size: size}
	apiBefore, err := scrapeAPIServer(ctx, m.kube)
	if err != nil {
		return s, err
	}
	m.log("pool of %d: filling", size)
	var fillErr error
	cpu, wall := bench.CPUWindow(func() {
		t0 := time.Now()
		if fillErr = resize(ctx, m.kube, m.ns, size); fillErr == nil {
			fillErr = m.waitFull(ctx, size)
		}
		s.Fill = time.Since(t0)
	})
	if fillErr != nil {
		return s, fillErr
	}
	s.FillAPIServerCPU = cpuOf(cpu, "kube-apiserver") / wall.Seconds()
	m.log("pool of %d: full after %v; settling", size, s.Fill.Round(time.Millisecond))
	if err := m.settle(ctx); err != nil {
		return s, err
	}

	// The background: lease renewals and resyncs with nobody logging in.
	b0, err := scrapeAll(ctx, m.reps)
	if err != nil {
		return s, err
	}
	select {
	case <-time.After(cfg.Baseline):
	case <-ctx.Done():
		return s, ctx.Err()
	}
	b1, err := scrapeAll(ctx, m.reps)
	if err != nil {
		return s, err
	}
	s.Background = perSecond(requestsDelta(b0, b1), cfg.Baseline)

	m.log("pool of %d: %d logins", size, cfg.Logins)
	before := b1
	t0 := time.Now()
	cpu, _ = bench.CPUWindow(func() {
		for i := range cfg.Logins {
			s.Logins = append(s.Logins, m.login(ctx, "warm", fmt.Sprint(size), i, t0))
		}
		fillErr = m.waitFull(ctx, size)
	})
	if fillErr != nil {
		return s, fillErr
	}
	if err := m.settle(ctx); err != nil {
		return s, err
	}
	window := time.Since(t0)
	after, err := scrapeAll(ctx, m.reps)
	if err != nil {
		return s, err
	}
	apiAfter, err := scrapeAPIServer(ctx, m.kube)
	if err != nil {
		return s, err
	}
	s.APIServerCPU = cpuOf(cpu, "kube-apiserver") / float64(cfg.Logins)
	s.Login = bench.Summarize(s.Logins, bench.Prompt)
	s.PerLogin = perLogin(requestsDelta(before, after), s.Background, window, cfg.Logins)
	claim := claimDelta(before, after)
	s.ClaimP50, s.ClaimP99 = claim.Quantile(0.5), claim.Quantile(0.99)
	lead := leader(before, after)
	if lead >= 0 {
		sync := bench.HistogramDelta(before[lead], after[lead], "podgate_pool_sync_duration_seconds", "role", "leader")
		s.SyncP50, s.SyncP99, s.SyncMax, s.SyncPasses = sync.Quantile(0.5), sync.Quantile(0.99), sync.Quantile(1), sync.Count()
	}
	s.APF = apfDelta(apiBefore, apiAfter)
	for i, r := range m.reps {
		rss, _ := bench.RSS(r.Cmd.Process.Pid)
		s.Replicas = append(s.Replicas, ReplicaUse{ID: r.id, Leader: i == lead, RSS: rss, Goroutines: after[i].Value("go_goroutines")})
	}
	m.log("pool of %d: login p50 %s p99 %s, writes/login %.2f, leader sync p99 %.1f ms, max RSS %d MiB",
		size, bench.FormatDuration(s.Login.P50), bench.FormatDuration(s.Login.P99), s.PerLogin.Writes(), s.SyncP99*1000, s.MaxRSS()>>20)
	return s, nil
}

// login is one timed warm login on the next replica; the connection is
// closed at once, which deletes its pod.
func (m *measurer) login(ctx context.Context, scenario, label string, i int, t0 time.Time) bench.Sample {
	r := m.reps[m.next%len(m.reps)]
	m.next++
	start := time.Since(t0)
	c, err := attach(ctx, r.dialer)
	smp := bench.Sample{Scenario: scenario, Label: label, Index: i, Start: start}
	if c != nil {
		smp.Timing = c.Timing
		_ = c.Close()
	}
	if err != nil {
		smp.Err = err.Error()
	}
	return smp
}

// attach logs in and opens a TTY shell up to its first output byte (the
// prompt). Unlike bench.Dialer.Attach it types nothing: an exec into a
// fake pod is a local process with no controlling terminal, so the shell
// runs without job control and a line typed as its prompt arrives can be
// lost, which would time the 90 s timeout instead of podgate.
func attach(ctx context.Context, d *bench.Dialer) (*bench.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	c, err := d.Dial(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := c.OpenShell(ctx, true); err != nil {
		return c, err
	}
	return c, nil
}

// loginsUntil makes sequential logins until ctx ends (for the profile).
func (m *measurer) loginsUntil(ctx context.Context) int {
	n := 0
	t0 := time.Now()
	for ctx.Err() == nil {
		m.login(ctx, "profile", "", n, t0)
		n++
	}
	return n
}

// burst starts cfg.Burst logins at once, spread over the replicas, at
// the largest size; every connection stays open until all have logged in.
func (m *measurer) burst(ctx context.Context, cfg Config) (*Burst, error) {
	size := cfg.Sizes[len(cfg.Sizes)-1]
	b := &Burst{Size: size, Samples: make([]bench.Sample, cfg.Burst)}
	m.log("burst of %d logins at a pool of %d", cfg.Burst, size)
	before, err := scrapeAll(ctx, m.reps)
	if err != nil {
		return nil, err
	}
	apiBefore, err := scrapeAPIServer(ctx, m.kube)
	if err != nil {
		return nil, err
	}
	var conns []*bench.Conn
	var mu sync.Mutex // protects conns
	t0 := time.Now()
	cpu, wall := bench.CPUWindow(func() {
		var wg sync.WaitGroup
		for i := range cfg.Burst {
			wg.Go(func() {
				c, err := attach(ctx, m.reps[i%len(m.reps)].dialer)
				smp := bench.Sample{Scenario: "burst", Label: fmt.Sprint(size), Index: i, Start: time.Since(t0)}
				if c != nil {
					smp.Timing = c.Timing
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
				if err != nil {
					smp.Err = err.Error()
				}
				b.Samples[i] = smp
			})
		}
		wg.Wait()
	})
	b.Wall = wall
	for _, c := range conns {
		_ = c.Close()
	}
	b.APIServerCPU = cpuOf(cpu, "kube-apiserver")
	b.PodgateCPU = cpuOf(cpu, "podgate")
	b.Login = bench.Summarize(b.Samples, bench.Prompt)
	for _, smp := range b.Samples {
		if smp.Miss {
			b.Misses++
		}
	}
	// The refill is waited for so that its requests count; a pool that
	// does not refill in time is reported, with the burst's figures kept.
	if err := m.waitFullWithin(ctx, size, refillWait); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		b.Refill = err.Error()
		m.log("burst: %v", err)
	}
	if err := m.settle(ctx); err != nil {
		return nil, err
	}
	after, err := scrapeAll(ctx, m.reps)
	if err != nil {
		return nil, err
	}
	apiAfter, err := scrapeAPIServer(ctx, m.kube)
	if err != nil {
		return nil, err
	}
	// The background is not subtracted here: the burst and its refill
	// take seconds, against a background of a few requests per second.
	b.PerLogin = perLogin(requestsDelta(before, after), nil, 0, cfg.Burst)
	claim := claimDelta(before, after)
	b.ClaimP50, b.ClaimP99 = claim.Quantile(0.5), claim.Quantile(0.99)
	b.APF = apfDelta(apiBefore, apiAfter)
	m.log("burst: p50 %s p99 %s, %d errors, %d misses", bench.FormatDuration(b.Login.P50), bench.FormatDuration(b.Login.P99), b.Login.Errors, b.Misses)
	return b, nil
}

// refillWait bounds the wait for the pool to refill after the burst.
const refillWait = 3 * time.Minute

// waitFull polls (a separate process offers no event to watch) until
// the pool holds size idle pods, for at most 20 minutes. It gives up at
// once when KWOK stops answering: no fake pod becomes Ready or goes away
// without it, so the pool would never fill.
func (m *measurer) waitFull(ctx context.Context, size int) error {
	return m.waitFullWithin(ctx, size, 20*time.Minute)
}

// waitFullWithin is waitFull with a bound of its own.
func (m *measurer) waitFullWithin(ctx context.Context, size int, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		if m.reps[0].IdlePods(ctx, "default") >= float64(size) {
			return nil
		}
		if n%20 == 19 {
			if err := kwokAnswers(ctx); err != nil {
				return fmt.Errorf("waiting for %d idle pods: %w", size, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d idle pods (have %v): %w", size, m.reps[0].IdlePods(context.Background(), "default"), ctx.Err())
		case <-tick.C:
		}
	}
}

// kwokAnswers checks that the local cluster's KWOK still serves.
func kwokAnswers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, localcluster.KWOKHealthURL, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("KWOK stopped answering (see the local cluster's logs/kwok.log): %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("KWOK's health check answered %s (see the local cluster's logs/kwok.log)", resp.Status)
	}
	return nil
}

// settle waits until the replicas are quiet: over 3 s, no more API
// requests than lease renewals make (2 a second per replica) and
// goroutines steady within 2 % (the prepared streams of new idle pods,
// which client-go's metrics do not count, are open). It gives up quietly
// after 3 minutes: a replica that never settles is then measured as it is.
func (m *measurer) settle(ctx context.Context) error {
	deadline := time.Now().Add(3 * time.Minute)
	prev, err := scrapeAll(ctx, m.reps)
	if err != nil {
		return err
	}
	for time.Now().Before(deadline) {
		select {
		case <-time.After(3 * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
		cur, err := scrapeAll(ctx, m.reps)
		if err != nil {
			return err
		}
		reqs := requestsDelta(prev, cur)
		g0, g1 := sumOf(prev, "go_goroutines"), sumOf(cur, "go_goroutines")
		if reqs.Reads()+reqs.Writes() <= float64(6*len(m.reps)) && math.Abs(g1-g0) <= 0.02*g0 {
			return nil
		}
		prev = cur
	}
	m.log("replicas not quiet after 3 minutes; measuring anyway")
	return nil
}

// requestsDelta is API requests by method over all replicas between two
// scrapes.
func requestsDelta(before, after []podgatetest.Metrics) Requests {
	out := Requests{}
	for i := range after {
		for _, met := range after[i].Find("podgate_kube_requests_total") {
			method := ""
			for _, lp := range met.GetLabel() {
				if lp.GetName() == "method" {
					method = lp.GetValue()
				}
			}
			out[method] += met.GetCounter().GetValue()
		}
		for _, met := range before[i].Find("podgate_kube_requests_total") {
			for _, lp := range met.GetLabel() {
				if lp.GetName() == "method" {
					out[lp.GetValue()] -= met.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

func perSecond(r Requests, d time.Duration) Requests {
	out := Requests{}
	for k, v := range r {
		out[k] = v / d.Seconds()
	}
	return out
}

// perLogin divides a window's requests, less the background over it,
// among the logins.
func perLogin(r, background Requests, window time.Duration, logins int) Requests {
	out := Requests{}
	for k, v := range r {
		out[k] = max(0, v-background[k]*window.Seconds()) / float64(logins)
	}
	return out
}

// claimDelta is the claim phase over every replica.
func claimDelta(before, after []podgatetest.Metrics) bench.Histogram {
	var h bench.Histogram
	for i := range after {
		h = h.Add(bench.HistogramDelta(before[i], after[i], "podgate_phase_duration_seconds", "phase", "claim"))
	}
	return h
}

func sumOf(ms []podgatetest.Metrics, name string) float64 {
	var s float64
	for _, m := range ms {
		s += m.Value(name)
	}
	return s
}

// cpuOf sums the CPU seconds of the processes called name.
func cpuOf(use []bench.CPUUse, name string) float64 {
	var s float64
	for _, u := range use {
		if u.Name == name {
			s += u.Seconds
		}
	}
	return s
}

// pprofTop is `go tool pprof -top` of a profile, its first lines.
func pprofTop(ctx context.Context, bin, file string) string {
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=15", bin, file).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go tool pprof failed: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}
