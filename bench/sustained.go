package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Sustained is scenario 5's outcome.
type Sustained struct {
	Samples []Sample
	// Bins are 5-second windows by arrival time.
	Bins []Bin
	// Server is podgate's own view, scraped every second: cumulative
	// claims by result and the idle pods, for cross-checking the
	// client-side hit/miss attribution.
	Server []ServerPoint
	Phases []Phase
	// ColdStarts is podgate_pod_start_duration_seconds over the run: cold
	// pods made for waiting users, creation to Ready.
	ColdStarts Phase
}

// Bin counts one window's arrivals.
type Bin struct {
	From                 time.Duration
	Hits, Misses, Errors int
}

// ServerPoint is one scrape during the sustained run.
type ServerPoint struct {
	At                 time.Duration
	Hits, Misses, Idle float64
	// Warming are idle pods still starting, Target the pool's idle target.
	Warming, Target   float64
	ConnectionsActive float64
}

// binWidth is the width of the sustained run's hit ratio windows.
const binWidth = 5 * time.Second

// Sustained is scenario 5: Poisson arrivals at c.Rate for c.For, sessions
// of c.SessionMin..c.SessionMax, the pool starting at its minimum. A miss
// is attributed from the client side: podgate's "waiting for a pod" line
// on the session's stderr.
func (r *Runner) Sustained(ctx context.Context, c Config) (Sustained, error) {
	var out Sustained
	ns, del, err := r.namespace(ctx, "sustained")
	if err != nil {
		return out, err
	}
	defer del()
	pg, err := r.start(ctx, ns, "sustained", c.SustainedPoolMin,
		fmt.Sprintf("PODGATE_POOL_MIN=%d", c.SustainedPoolMin), "PODGATE_POOL_MAX=150")
	if err != nil {
		return out, err
	}
	defer pg.stop()
	settle(ctx, 3*time.Second)
	secs := int(c.For / time.Second)
	r.Progress.Step(fmt.Sprintf("sustained %g/s for %v", c.Rate, c.For), secs)
	before, err := pg.Scrape(ctx)
	if err != nil {
		return out, err
	}

	t0 := time.Now()
	stopScrape := make(chan struct{})
	scraped := make(chan []ServerPoint)
	go func() {
		var pts []ServerPoint
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			select {
			case <-stopScrape:
				scraped <- pts
				return
			case <-tk.C:
				m, err := pg.Scrape(ctx)
				if err != nil {
					continue
				}
				pts = append(pts, ServerPoint{At: time.Since(t0),
					Hits:              counter(m, "podgate_claims_total", "result", "hit"),
					Misses:            counter(m, "podgate_claims_total", "result", "miss"),
					Idle:              m.Value("podgate_pool_pods", "profile", "default", "state", "idle"),
					Warming:           m.Value("podgate_pool_pods", "profile", "default", "state", "warming"),
					Target:            m.Value("podgate_pool_target", "profile", "default"),
					ConnectionsActive: m.Value("podgate_connections_active")})
				r.Progress.Add(1, 1)
			}
		}
	}()

	// A fixed seed: every run sees the same arrival pattern.
	rng := rand.New(rand.NewPCG(6, 2026))
	var (
		mu      sync.Mutex // protects samples
		samples []Sample
		wg      sync.WaitGroup
	)
	at := time.Duration(0)
	for i := 0; ; i++ {
		at += time.Duration(rng.ExpFloat64() / c.Rate * float64(time.Second))
		if at >= c.For {
			break
		}
		hold := c.SessionMin + time.Duration(rng.Int64N(int64(c.SessionMax-c.SessionMin)+1))
		settle(ctx, time.Until(t0.Add(at)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := Sample{Scenario: "sustained", Label: "sustained", Index: i, Start: time.Since(t0)}
			conn, _, err := pg.dialer.Attach(ctx)
			if conn != nil {
				s.Timing = conn.Timing
			}
			if err != nil {
				s.Err = err.Error()
			} else {
				settle(ctx, hold)
				conn.Close()
			}
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(stopScrape)
	out.Server = <-scraped
	after, err := pg.Scrape(ctx)
	if err == nil {
		out.Phases = phases(before, after)
		h := histDelta(before, after, "podgate_pod_start_duration_seconds")
		if h.count > 0 {
			out.ColdStarts = Phase{Name: "cold pod start", Count: h.count, Mean: h.sum / h.count, P50: h.quantile(0.5), P99: h.quantile(0.99)}
		}
	}
	out.Samples = sortByIndex(samples)
	out.Bins = bins(out.Samples, c.For)
	return out, nil
}

// bins counts hits, misses and errors per binWidth window of arrival.
func bins(samples []Sample, span time.Duration) []Bin {
	n := int((span + binWidth - 1) / binWidth)
	out := make([]Bin, n)
	for i := range out {
		out[i].From = time.Duration(i) * binWidth
	}
	for _, s := range samples {
		i := min(int(s.Start/binWidth), n-1)
		switch {
		case !s.OK():
			out[i].Errors++
		case s.Miss:
			out[i].Misses++
		default:
			out[i].Hits++
		}
	}
	return out
}

// HitRatio is hits over attaches (errors count as not hits) for samples
// that arrived at or after from.
func HitRatio(samples []Sample, from time.Duration) (ratio float64, hits, total int) {
	for _, s := range samples {
		if s.Start < from {
			continue
		}
		total++
		if s.OK() && !s.Miss {
			hits++
		}
	}
	if total == 0 {
		return 0, 0, 0
	}
	return float64(hits) / float64(total), hits, total
}

func sortByIndex(s []Sample) []Sample {
	out := make([]Sample, len(s))
	for _, x := range s {
		if x.Index < len(out) {
			out[x.Index] = x
		}
	}
	return out
}

// ServedRate is how fast users got their prompt during the sustained run:
// the users served divided by the time from the first arrival to the last
// prompt. Below the arrival rate, the node could not keep up.
func ServedRate(samples []Sample) (perSec float64, served int) {
	var first, last time.Duration = -1, 0
	for _, s := range samples {
		if first < 0 || s.Start < first {
			first = s.Start
		}
		if s.OK() {
			served++
			last = max(last, s.Start+s.Prompt)
		}
	}
	if served == 0 || last <= first {
		return 0, served
	}
	return float64(served) / (last - first).Seconds(), served
}

// LastMiss is the arrival time of the last miss, or -1 with none.
func LastMiss(samples []Sample) time.Duration {
	last := time.Duration(-1)
	for _, s := range samples {
		if s.Miss {
			last = max(last, s.Start)
		}
	}
	return last
}

// peakTarget is the highest idle target podgate reported during the run.
func peakTarget(pts []ServerPoint) float64 {
	top := 0.0
	for _, pt := range pts {
		top = max(top, pt.Target)
	}
	return top
}
