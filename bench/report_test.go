package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func run(scenario string, q QPS, prompts ...time.Duration) Run {
	r := Run{Scenario: scenario, Label: scenario, QPS: q}
	for i, p := range prompts {
		r.Samples = append(r.Samples, Sample{Scenario: scenario, Index: i, Timing: Timing{Prompt: p, Echo: time.Millisecond}})
	}
	return r
}

func TestRecommend(t *testing.T) {
	slow := run("burst", QPS{5, 10}, time.Second, 2*time.Second)
	slow.Throttled = 40
	mid := run("burst", QPS{20, 40}, 300*time.Millisecond, 400*time.Millisecond)
	fast := run("burst", QPS{50, 100}, 290*time.Millisecond, 390*time.Millisecond)
	if i, _ := Recommend([]Run{slow, mid, fast}); i != 1 {
		t.Errorf("Recommend = %d, want 1 (lowest unthrottled within 10%% of the best p90)", i)
	}
	if i, why := Recommend([]Run{slow}); i != 0 || !strings.Contains(why, "every setting throttled") {
		t.Errorf("Recommend(all throttled) = %d %q", i, why)
	}
}

func TestWriteReportAndPlots(t *testing.T) {
	res := &Results{Config: QuickConfig(), Meta: Meta{Date: time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC), Commit: "abc"}}
	res.Warm = run("warm", QPS{}, 20*time.Millisecond, 22*time.Millisecond, 90*time.Millisecond)
	res.Cold = run("cold", QPS{}, 2*time.Second, 3*time.Second)
	for i := range res.Cold.Samples {
		res.Cold.Samples[i].Miss = true
	}
	res.Sweep = []Run{run("burst", QPS{5, 10}, time.Second), run("burst", QPS{50, 100}, 200*time.Millisecond)}
	res.Sweep[0].Samples = append(res.Sweep[0].Samples, Sample{Err: "refused"})
	// Only the throttled run's warm-up was timed: the report must say the
	// rate it gives came from a warm-up at 5/10.
	res.Sweep[0].WarmUp = 10 * time.Second
	res.Sustained.Samples = []Sample{{Scenario: "sustained", Start: 16 * time.Second, Timing: Timing{Prompt: 30 * time.Millisecond}},
		{Scenario: "sustained", Index: 1, Start: 17 * time.Second, Timing: Timing{Prompt: 2 * time.Second, Miss: true}}}
	res.Sustained.Bins = bins(res.Sustained.Samples, res.Config.For)
	res.Memory = Memory{Conns: 2, Sessions: 10, RSS0: 50 << 20, RSS1: 51 << 20}
	res.Transfers = []Transfer{{Name: "cat", Bytes: 100e6, Elapsed: time.Second, Verified: true}}
	dir := t.TempDir()
	files, err := Write(res, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 7 { // CSV, 4 plots, report, latest
		t.Errorf("wrote %d files: %v", len(files), files)
	}
	md, err := os.ReadFile(filepath.Join(dir, "latest.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| warm attach p50, TCP connect → first prompt byte | ≤ 25 ms | 22.0 ms | **met** |",
		"| warm attach p99 | ≤ 100 ms | 90.0 ms | **met** |",
		"≥ 40× | 91× (22.0 ms vs 2000 ms) | **met**",
		"**Recommended: 50/100**",
		"50.0 % (1 of 2) | **missed**",
		"0.2 pods/s (a pool of 20 in 10.0 s, 20 creations in flight, at QPS/burst 5/10). That warm-up ran at a low client-side rate limit",
		"102 KiB (10 sessions over 2 connections) | **met**",
		"| throughput, cat | ≥ 50 MB/s | 100.0 MB/s (checksum verified) | **met** |",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	csv, _ := os.ReadFile(filepath.Join(dir, "samples-2026-11-22-1500-quick.csv"))
	if n := strings.Count(string(csv), "\n"); n != 1+3+2+3+2 {
		t.Errorf("CSV has %d lines:\n%s", n, csv)
	}
}
