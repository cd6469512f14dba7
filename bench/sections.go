package bench

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// targets prints issue #6's targets beside the measured figures, and for
// each missed one what bounds it, from podgate's phase histograms.
func targets(b *strings.Builder, res *Results) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	p("## Targets (issue #6) beside the measured figures")
	p("")
	p("| target | goal | measured | verdict |")
	p("|---|---|---|---|")
	var bounds []string
	w := Summarize(res.Warm.Samples, Prompt)
	co := Summarize(res.Cold.Samples, Prompt)
	if w.Count > 0 {
		p("| warm attach p50, TCP connect → first prompt byte | ≤ 25 ms | %s | %s |", fms(w.P50), verdict(w.P50 <= 25*time.Millisecond))
		p("| warm attach p99 | ≤ 100 ms | %s | %s |", fms(w.P99), verdict(w.P99 <= 100*time.Millisecond))
		if w.P50 > 25*time.Millisecond || w.P99 > 100*time.Millisecond {
			bounds = append(bounds, fmt.Sprintf("Warm attach: of the p50 %s, podgate's own phases take handshake %s, auth %s, claim %s (a hand-out from the replica's reserved pods, its claim record written in parallel: no API call) and exec start %s (p50s from the buckets; means %s, %s, %s, %s). Exec start runs from handing the shell to the prepared exec stream to the shell's first output byte: the spec's trip through the API server, the kubelet and containerd to the pod's terminal, the wrapper's read of it (no fork: see kube/wrapper.go), the guest shell's start-up and its prompt's trip back.",
				fms(w.P50), fsec(phaseP50(res.Warm, "handshake")), fsec(phaseP50(res.Warm, "auth")), fsec(phaseP50(res.Warm, "claim")), fsec(phaseP50(res.Warm, "exec_start")),
				fsec(phaseMean(res.Warm, "handshake")), fsec(phaseMean(res.Warm, "auth")), fsec(phaseMean(res.Warm, "claim")), fsec(phaseMean(res.Warm, "exec_start"))))
		}
	}
	if wb := Summarize(res.WarmBusy.Samples, Prompt); wb.Count > 0 {
		p("| (for reference) warm attach during refill (1c): p50, p99 | – | %s, %s | – |", fms(wb.P50), fms(wb.P99))
		bounds = append(bounds, fmt.Sprintf("Warm attach during refill (1c): p50 %s, exec start p50 %s against %s on a settled pool. The difference is CPU: starting and deleting pods takes both cores for a while, and every hop of the attach (API server, kubelet, containerd, the guest's processes) waits for its turn.", fms(wb.P50), fsec(phaseP50(res.WarmBusy, "exec_start")), fsec(phaseP50(res.Warm, "exec_start"))))
	}
	if ws := Summarize(res.WarmSh.Samples, Prompt); ws.Count > 0 {
		p("| (for reference) warm attach with `PODGATE_SHELL=/bin/sh`: p50, p99 | – | %s, %s | – |", fms(ws.P50), fms(ws.P99))
		if w.P50 > 25*time.Millisecond {
			bounds = append(bounds, fmt.Sprintf("The same warm attach with /bin/sh as the login shell has p50 %s (exec start p50 %s) against %s with `bash -l`: the difference is the most that the guest shell's own start-up costs.", fms(ws.P50), fsec(phaseP50(res.WarmSh, "exec_start")), fms(w.P50)))
		}
	}
	if w.Count > 0 && co.Count > 0 {
		ratio := float64(co.P50) / float64(w.P50)
		p("| warm vs cold at p50, same run | ≥ 40× | %.0f× (%s vs %s) | %s |", ratio, fms(w.P50), fms(co.P50), verdict(ratio >= 40))
		if ratio < 40 {
			bounds = append(bounds, fmt.Sprintf("Warm vs cold: the cold p50 (%s) is the pod start on this cluster (claim phase mean %s: create, schedule, container start, Ready); the ratio is bounded by the warm p50.", fms(co.P50), fsec(phaseMean(res.Cold, "claim"))))
		}
	}
	if len(res.Sweep) > 0 {
		ri, _ := Recommend(res.Sweep)
		if ri >= 0 {
			r := res.Sweep[ri]
			s := Summarize(r.Samples, Prompt)
			in := s.Errors == 0
			p("| burst of %d at the recommended QPS/burst %s: p90 | ≤ 1 s | %s | %s |", res.Config.Burst, r.QPS, fms(s.P90), verdict(s.P90 <= time.Second && s.Count > 0))
			p("| … every user in | %d of %d | %d of %d (all in after %s) | %s |", len(r.Samples), len(r.Samples), s.Count, len(r.Samples), fms(allIn(r)), verdict(in))
			p("| … client-side throttling waits (> 1 ms) | 0 | %.0f (total %s) | %s |", r.Throttled, fms(r.ThrottleWait), verdict(r.Throttled == 0))
			if s.P90 > time.Second {
				throttled := "no request waited on a rate limiter"
				if r.Throttled > 0 {
					throttled = fmt.Sprintf("%.0f requests waited %s in all on the client-side rate limiter", r.Throttled, fms(r.ThrottleWait))
				}
				bounds = append(bounds, fmt.Sprintf("Burst: at %s podgate's phases have p50/p99 handshake %s/%s, claim %s/%s and exec start %s/%s, and %s. %s",
					r.QPS, fsec(phaseP50(r, "handshake")), fsec(phaseQ(r, "handshake")), fsec(phaseP50(r, "claim")), fsec(phaseQ(r, "claim")),
					fsec(phaseP50(r, "exec_start")), fsec(phaseQ(r, "exec_start")), throttled, cpuSentence(r, res.Meta.CPUs)))
			}
		}
		for _, r := range res.Sweep {
			if r.QPS == (QPS{5, 10}) {
				s := Summarize(r.Samples, Prompt)
				p("| (for reference) burst at client-go's default 5/10 | – | %d of %d users in, %d refused; p90 of those in %s; %.0f throttled requests, %s waited | – |", s.Count, len(r.Samples), s.Errors, fms(s.P90), r.Throttled, fms(r.ThrottleWait))
			}
		}
	}
	if len(res.Sustained.Samples) > 0 {
		ratio, hits, total := HitRatio(res.Sustained.Samples, 15*time.Second)
		p("| sustained hit ratio after the first 15 s | ≥ 99 %% | %.1f %% (%d of %d) | %s |", 100*ratio, hits, total, verdict(ratio >= 0.99))
		if ratio < 0.99 {
			bounds = append(bounds, sustainedBound(res))
			if rate, run := bestStartRate(res.Sweep); rate > 0 {
				start := fmt.Sprintf("The node's best pod start rate in this run, warming an idle pool with nothing else running: %.1f pods/s (a pool of %d in %s, %s creations in flight, at QPS/burst %s).",
					rate, res.Config.Burst, fsec(run.WarmUp.Seconds()), strings.TrimPrefix(fastWarm, "PODGATE_POOL_MAX_CREATING="), run.QPS)
				if run.QPS.QPS < podgateQPS.QPS {
					start += " That warm-up ran at a low client-side rate limit, so it bounds the node's rate from below only."
				}
				if rate < res.Config.Rate {
					start += fmt.Sprintf(" With %g arrivals/s each using a fresh pod, at most %.0f %% of arrivals can find a warm pod once the first pool is spent, whatever the sizing.", res.Config.Rate, 100*rate/res.Config.Rate)
				} else {
					start += fmt.Sprintf(" That is above the %g arrivals/s: starting pods while sessions run and used pods are deleted on the same CPUs is what slows every start (cold pods above).", res.Config.Rate)
				}
				bounds = append(bounds, start)
			}
		}
	}
	if mem := res.Memory; mem.Sessions > 0 && mem.RSS1 > 0 {
		per := float64(mem.RSS1-mem.RSS0) / float64(mem.Sessions)
		p("| podgate RSS per idle connected session | ≤ 200 KiB | %.0f KiB (%d sessions over %d connections) | %s |", per/1024, mem.Sessions, mem.Conns, verdict(per <= 200*1024))
		if per > 200*1024 {
			bounds = append(bounds, fmt.Sprintf("Memory: the Go heap in use grew by %.0f KiB per session and goroutines by %.1f per session; the rest of the RSS growth is the runtime's reserve and the API client's buffers per exec stream.",
				(mem.Heap1-mem.Heap0)/1024/float64(mem.Sessions), (mem.Gor1-mem.Gor0)/float64(mem.Sessions)))
		}
	}
	for _, t := range res.Transfers {
		check := map[bool]string{true: "checksum verified", false: "checksum NOT verified"}[t.Verified]
		if strings.HasPrefix(t.Name, "ssh -L") {
			// Forwarding has no target of its own; it is measured.
			p("| throughput, %s | none set | %.1f MB/s (%s) | measured |", t.Name, t.MBps(), check)
			continue
		}
		p("| throughput, %s | ≥ 50 MB/s | %.1f MB/s (%s) | %s |", t.Name, t.MBps(), check, verdict(t.MBps() >= 50 && t.Verified))
	}
	if len(bounds) > 0 {
		p("")
		p("### What bounds the missed targets")
		p("")
		for _, s := range bounds {
			p("- %s", s)
		}
	}
}

// phaseP50 is a run's p50 for one server phase, or NaN.
func phaseP50(r Run, name string) float64 {
	for _, ph := range r.Phases {
		if ph.Name == name {
			return ph.P50
		}
	}
	return math.NaN()
}

// phaseQ is a run's p99 for one server phase, or NaN.
func phaseQ(r Run, name string) float64 {
	for _, ph := range r.Phases {
		if ph.Name == name {
			return ph.P99
		}
	}
	return math.NaN()
}

// sweep prints scenarios 3 and 4.
func sweep(b *strings.Builder, res *Results) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	c := res.Config
	p("## 3–4. Burst of %d and the QPS/burst sweep", c.Burst)
	p("")
	if len(res.Sweep) == 0 {
		p("Not run.")
		return
	}
	p("%d connections start at the same instant against a pool pre-warmed to %d, and stay until all are in. One run per client-go QPS/burst setting (`PODGATE_KUBE_QPS`/`PODGATE_KUBE_BURST`; client-go's own default is 5/10, podgate's 50/100); each run has a fresh podgate that warms the pool back to %d in the same namespace before its burst. *Throttled* counts API requests that waited more than 1 ms in client-go's rate limiter during the burst (podgate_kube_rate_limiter_duration_seconds).", c.Burst, c.Burst, c.Burst)
	p("")
	p("| QPS/burst | prompt p50 | p90 | p99 | max | all in after | count | errors | throttled requests | throttle wait |")
	p("|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range res.Sweep {
		s := Summarize(r.Samples, Prompt)
		p("| %s | %s | %s | %s | %s | %s | %d | %d | %.0f | %s |", r.QPS, fms(s.P50), fms(s.P90), fms(s.P99), fms(s.Max), fms(allIn(r)), s.Count, s.Errors, r.Throttled, fms(r.ThrottleWait))
	}
	if i, why := Recommend(res.Sweep); i >= 0 {
		p("")
		p("**Recommended: %s**, because %s.", res.Sweep[i].QPS, why)
	}
	for _, r := range res.Sweep {
		p("")
		p("### Burst at QPS/burst %s", r.QPS)
		p("")
		runTable(b, r)
		if len(r.CPU) > 0 {
			p("")
			p("CPU time used on this machine while the burst ran (%s, until every connection had its prompt and its `echo ok`), by process name: %s. (Processes that started and ended within the burst, such as runc, are not counted.)", fms(r.CPUWall), topCPU(r.CPU, 12))
		}
	}
}

// bestStartRate is the highest pool warm-up rate among the burst runs, in
// pods per second, with that run (its warm-up time and rate limit).
func bestStartRate(runs []Run) (float64, Run) {
	var best float64
	var at Run
	for _, r := range runs {
		if r.WarmUp <= 0 {
			continue
		}
		if rate := float64(len(r.Samples)) / r.WarmUp.Seconds(); rate > best {
			best, at = rate, r
		}
	}
	return best, at
}

// sustained prints scenario 5.
func sustained(b *strings.Builder, res *Results) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	c, s := res.Config, res.Sustained
	p("## 5. Sustained")
	p("")
	if len(s.Samples) == 0 {
		p("Not run.")
		return
	}
	p("Poisson arrivals at %g/s for %v (fixed seed), each session holding its shell %v–%v (uniform), the pool starting at its minimum of %d idle pods and growing on misses (at most PODGATE_POOL_MAX_STARTING, 20, pods start at once). A miss is attributed **from the client side**: podgate writes \"waiting for a pod\" to the session (stdout on a TTY) before a cold pod exists, so it always precedes the prompt. podgate_claims_total{result} scraped every second cross-checks it.", c.Rate, c.For, c.SessionMin, c.SessionMax, c.SustainedPoolMin)
	p("")
	all, hits, total := HitRatio(s.Samples, 0)
	after, h15, t15 := HitRatio(s.Samples, 15*time.Second)
	p("Hit ratio: %.1f %% overall (%d of %d), **%.1f %% after the first 15 s** (%d of %d).", 100*all, hits, total, 100*after, h15, t15)
	if n := len(s.Server); n > 0 {
		last := s.Server[n-1]
		p("podgate counted %.0f hits and %.0f misses (podgate_claims_total, cumulative at the last scrape, which may miss the final second).", last.Hits, last.Misses)
	}
	queued, other := 0, 0
	for _, x := range s.Samples {
		switch {
		case x.Err != "" && x.Miss:
			queued++
		case x.Err != "":
			other++
		}
	}
	if queued+other > 0 {
		p("Errors: %d logins waited for a pod until podgate gave up on them (PODGATE_MAX_WAIT, 60 s by default, then the session ends; the client's error text is how it saw the end), %d failed otherwise.", queued, other)
	}
	if cs := s.ColdStarts; cs.Count > 0 {
		p("Cold pods started for waiting users: %.0f, creation to Ready p50 %s, p99 %s, mean %s (podgate_pod_start_duration_seconds).", cs.Count, fsec(cs.P50), fsec(cs.P99), fsec(cs.Mean))
	}
	p("")
	p("| attaches | p50 | p90 | p99 | max | count | errors |")
	p("|---|---|---|---|---|---|---|")
	for _, g := range []struct {
		name string
		keep func(Sample) bool
	}{
		{"all", func(Sample) bool { return true }},
		{"hits", func(x Sample) bool { return !x.OK() || !x.Miss }},
		{"misses", func(x Sample) bool { return x.OK() && x.Miss }},
	} {
		sm := Summarize(Filter(s.Samples, g.keep), Prompt)
		p("| %s (first prompt byte) | %s | %s | %s | %s | %d | %d |", g.name, fms(sm.P50), fms(sm.P90), fms(sm.P99), fms(sm.Max), sm.Count, sm.Errors)
	}
	p("")
	p("| arrivals from | hits | misses | errors | hit ratio |")
	p("|---|---|---|---|---|")
	for _, bn := range s.Bins {
		n := bn.Hits + bn.Misses + bn.Errors
		r := "–"
		if n > 0 {
			r = fmt.Sprintf("%.0f %%", 100*float64(bn.Hits)/float64(n))
		}
		p("| %v | %d | %d | %d | %s |", bn.From, bn.Hits, bn.Misses, bn.Errors, r)
	}
}

// memory prints scenario 6.
func memory(b *strings.Builder, res *Results) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	m := res.Memory
	p("## 6. Memory")
	p("")
	if m.Sessions == 0 || m.RSS1 == 0 {
		p("Not run.")
		return
	}
	p("podgate's RSS (/proc/PID/status VmRSS), Go heap in use and goroutines with its pool warm and no session, then with **%d idle TTY shell sessions multiplexed over %d SSH connections** (%d sessions each; in connection mode a connection's sessions share its pod, so %d pods carry them and the node need not start %d). Per-session and per-connection figures are both given; podgate counted %.0f active sessions. Errors opening sessions: %d.",
		m.Sessions, m.Conns, m.Sessions/max(1, m.Conns), m.Conns, m.Sessions, m.Active, m.Errors)
	p("")
	p("| | no session | %d sessions | growth | per session | per connection |", m.Sessions)
	p("|---|---|---|---|---|---|")
	d := float64(m.RSS1 - m.RSS0)
	p("| RSS | %.1f MiB | %.1f MiB | %.1f MiB | %.0f KiB | %.0f KiB |", float64(m.RSS0)/(1<<20), float64(m.RSS1)/(1<<20), d/(1<<20), d/1024/float64(m.Sessions), d/1024/float64(m.Conns))
	dh := m.Heap1 - m.Heap0
	p("| Go heap in use | %.1f MiB | %.1f MiB | %.1f MiB | %.0f KiB | %.0f KiB |", m.Heap0/(1<<20), m.Heap1/(1<<20), dh/(1<<20), dh/1024/float64(m.Sessions), dh/1024/float64(m.Conns))
	dg := m.Gor1 - m.Gor0
	p("| goroutines | %.0f | %.0f | %.0f | %.1f | %.1f |", m.Gor0, m.Gor1, dg, dg/float64(m.Sessions), dg/float64(m.Conns))
}

// cpuSentence says how busy the machine's CPUs were during a burst, and
// which processes kept them busy.
func cpuSentence(r Run, cpus int) string {
	if len(r.CPU) == 0 || r.CPUWall <= 0 || cpus <= 0 {
		return ""
	}
	var used float64
	for _, u := range r.CPU {
		used += u.Seconds
	}
	avail := float64(cpus) * r.CPUWall.Seconds()
	verdict := "so the CPUs were busy throughout and CPU time, not a wait, bounds the burst"
	if used < 0.85*avail {
		verdict = "so the CPUs were not saturated and part of the time went to waits"
	}
	return fmt.Sprintf("While the burst ran (%s, until every connection had its prompt and its `echo ok`), the processes on this machine used %.1f of the %.1f CPU-seconds its %d CPUs had (%.0f %%), %s. The most: %s.",
		fms(r.CPUWall), used, avail, cpus, 100*used/avail, verdict, topCPU(r.CPU, 8))
}

// topCPU lists the n largest CPU users as "name 1.23 s".
func topCPU(use []CPUUse, n int) string {
	var parts []string
	for _, u := range use[:min(n, len(use))] {
		parts = append(parts, fmt.Sprintf("%s %.2f s", u.Name, u.Seconds))
	}
	return strings.Join(parts, ", ")
}

// sustainedBound says what held the sustained hit ratio below its target:
// a node that served fewer users per second than arrived, or the misses
// while the pool grew from its minimum.
func sustainedBound(res *Results) string {
	c, s := res.Config, res.Sustained
	rate, served := ServedRate(s.Samples)
	cs := s.ColdStarts
	head := fmt.Sprintf("Sustained: pods are never reused, so %g arrivals/s need %g new pods/s, with about %.0f sessions running at once (sessions %v–%v). Each miss raises the idle target by one, up to the pool min plus 2 × the claim rate × the median pod start (it peaked at %.0f), and at most 20 pods start at once, so that waiting users queue for pods the node is already starting instead of asking for more.",
		c.Rate, c.Rate, c.Rate*(c.SessionMin+c.SessionMax).Seconds()/2, c.SessionMin, c.SessionMax, peakTarget(s.Server))
	if rate < 0.95*c.Rate {
		return head + fmt.Sprintf(" The node gave users their pods at %.2f/s (%d of %d served), while it also ran the sessions and deleted the used pods on the same 2 CPUs%s. Below the arrival rate, the waiting users take every pod as it turns Ready, so no later arrival finds an idle one: only a node that starts pods faster under this load, or more nodes, can reach the target.",
			rate, served, len(s.Samples), coldClause(cs))
	}
	return head + fmt.Sprintf(" The node kept up (%.2f users/s served, %d of %d); the misses came while the pool grew from its minimum, the last at %s%s.",
		rate, served, len(s.Samples), fsec(LastMiss(s.Samples).Seconds()), coldClause(cs))
}

// coldClause says how long the cold pods of the sustained run took, if
// there were any.
func coldClause(cs Phase) string {
	if cs.Count == 0 {
		return ""
	}
	return fmt.Sprintf("; cold pods took p50 %s from creation to Ready (%.0f of them)", fsec(cs.P50), cs.Count)
}
