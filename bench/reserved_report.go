package bench

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// reservedTargets prints issue 19's targets beside the measured figures.
func reservedTargets(b *strings.Builder, res *Results) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	p("## Targets (issue 19: reserved pods) beside the measured figures")
	p("")
	p("| target | goal | measured | verdict |")
	p("|---|---|---|---|")
	if r, ok := defaultBurst(res.Sweep); ok {
		s := Summarize(r.Samples, Prompt)
		p("| burst of %d on one replica (QPS/burst %s): first prompt p90 | ≤ 1 s | %s | %s |", len(r.Samples), r.QPS, fms(s.P90), verdict(s.Count > 0 && s.P90 <= time.Second))
		p("| … every user in | %d of %d | %d of %d | %s |", len(r.Samples), len(r.Samples), s.Count, len(r.Samples), verdict(s.Errors == 0))
	}
	if r := res.Reserved.Burst; len(r.Samples) > 0 {
		s := Summarize(r.Samples, Prompt)
		p("| burst of %d spread over 2 replicas: first prompt p90 | ≤ 1.5 s | %s (%d of %d in) | %s |", len(r.Samples), fms(s.P90), s.Count, len(r.Samples), verdict(s.Count > 0 && s.P90 <= 1500*time.Millisecond && s.Errors == 0))
	}
	if w := Summarize(res.Warm.Samples, Prompt); w.Count > 0 {
		p("| sequential warm logins, `bash -l`: first prompt p50 | ≤ 20 ms | %s | %s |", fms(w.P50), verdict(w.P50 <= 20*time.Millisecond))
		p("| … p99 | ≤ 60 ms | %s | %s |", fms(w.P99), verdict(w.P99 <= 60*time.Millisecond))
	}
	if a := res.Warm.API; a.Logins > 0 {
		p("| API requests on a warm login's critical path (podgate_attach_api_requests: requests made with the login's context between accept and first output) | 0 | %.0f in %.0f logins; %.0f logins waited for any | %s |", a.Requests, a.Logins, a.Waited, verdict(a.Requests == 0))
		writes := a.Writes["pods create"] + a.Writes["pods patch"]
		n := float64(len(res.Warm.Samples))
		events := a.Writes["events create"] + a.Writes["events patch"]
		p("| API writes per warm login (pod creates and patches over the run ÷ logins: the claim record and the refill) | ≤ 2 | %.2f (%.0f patches, %.0f creates; also %.2f deletes per login at logout, %.2f Event writes per login and %.0f Lease updates in %s) | %s |",
			writes/n, a.Writes["pods patch"], a.Writes["pods create"], a.Writes["pods delete"]/n, events/n, a.Writes["leases update"], fms(res.Warm.Wall), verdict(writes/n <= 2))
	}
	for _, f := range res.Reserved.Replicas {
		if f.Prepared2 <= f.Prepared {
			continue
		}
		// The marginal cost: from a pool of Pool to one of BurstPool, so
		// that what the profile costs once (its sizer, store entries,
		// metrics) is left out; the pods' cache is not.
		dp := f.Prepared2 - f.Prepared
		heap := (f.Heap2 - f.Heap1) / dp / 1024
		gor := (f.Gor2 - f.Gor1) / dp
		p("| replica %s, per prepared idle pod: Go heap in use after GC, from a pool of %.0f to %.0f (%s for %.0f more prepared pods, with the cache of %.0f more pods) | ≤ 150 KiB | %.0f KiB | %s |",
			f.Name, f.Pods, f.Pods2, fbytes(f.Heap2-f.Heap1), dp, f.Pods2-f.Pods, heap, verdict(heap <= 150))
		p("| … goroutines per prepared idle pod | ≤ 8 | %.2f | %s |", gor, verdict(gor <= 8))
	}
	if st := res.Reserved.Streams; len(st) > 0 {
		most := slices.Max(slices.Collect(maps.Keys(st)))
		p("| 2 replicas, pool of %d: exec streams per pod, counted on the node (wrapper processes) | ≤ 2 | at most %d (%s) | %s |", res.Reserved.Pool, most, streamHist(st), verdict(most <= 2))
	}
}

// defaultBurst is the sweep's run at podgate's default QPS/burst, 50/100.
func defaultBurst(runs []Run) (Run, bool) {
	for _, r := range runs {
		if r.QPS == podgateQPS {
			return r, true
		}
	}
	return Run{}, false
}

// streamHist describes how many pods hold how many streams.
func streamHist(st map[int]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(st)) {
		parts = append(parts, fmt.Sprintf("%d pods with %d", st[k], k))
	}
	return strings.Join(parts, ", ")
}

func fbytes(v float64) string {
	return fmt.Sprintf("%.1f MiB", v/(1<<20))
}

// reservedSection prints scenario 9.
func reservedSection(b *strings.Builder, res *Results) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	r := res.Reserved
	p("## 9. Two replicas sharing a pool (reserved pods)")
	p("")
	if len(r.Replicas) == 0 {
		p("Not run.")
		return
	}
	p("Two podgate processes (replicas a and b) in one namespace, started with no pool; then a profile defined as a PodTemplate with a pool of %d, shared: each replica reserves its share and prepares one terminal stream into each of its reserved pods, the rest stays unreserved. Heap is Go's HeapInuse right after a collection (/debug/pprof/heap?gc=1).", r.Pool)
	p("")
	p("| replica | no pool: heap, goroutines | pool of %d: heap, goroutines, held, prepared | pool of %d: heap, goroutines, held, prepared |", r.Pool, r.BurstPool)
	p("|---|---|---|---|")
	for _, f := range r.Replicas {
		p("| %s | %s, %.0f | %s, %.0f, %.0f, %.0f | %s, %.0f, %.0f, %.0f |", f.Name, fbytes(f.Heap0), f.Gor0,
			fbytes(f.Heap1), f.Gor1, f.Held, f.Prepared, fbytes(f.Heap2), f.Gor2, f.Held2, f.Prepared2)
	}
	p("")
	p("Exec wrapper processes per pod of the pool on the node: %s.", streamHist(r.Streams))
	p("")
	p("### 9b. Burst of %d spread over both replicas", r.BurstPool)
	p("")
	p("The profile then grows to %d pods; once both replicas have prepared their shares, %d logins arrive at once, alternating between the replicas.", r.BurstPool, r.BurstPool)
	p("")
	runTable(b, r.Burst)
	if s := cpuSentence(r.Burst, res.Meta.CPUs); s != "" {
		p("")
		p("%s", s)
	}
}
