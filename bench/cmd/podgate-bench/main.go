// Command podgate-bench runs podgate's end-to-end benchmark (issue #6) on
// the cluster given by KUBECONFIG and writes a Markdown report, the raw
// data as CSV and plots under the output directory. `make bench` runs it;
// BENCH_QUICK=1 (or -quick) runs the reduced sizes. For diagnosis,
// BENCH_PODGATE_ENV adds settings to every podgate it starts (e.g.
// "PODGATE_LOG_LEVEL=debug") and BENCH_PODGATE_LOGS names a directory that
// receives each podgate's log.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/podgate/podgate/bench"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "podgate-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	quick := flag.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "reduced sizes (also BENCH_QUICK=1)")
	out := flag.String("out", envOr("BENCH_OUT", "bench/results"), "output directory (also BENCH_OUT)")
	n := flag.Int("n", 0, "burst size (default 100, quick 20)")
	warm := flag.Int("warm", 0, "warm sequential connections (default 200, quick 50)")
	cold := flag.Int("cold", 0, "cold sequential connections (default 30, quick 10)")
	sweep := flag.String("sweep", "", "QPS/burst settings for the burst, e.g. 5/10,50/100 (default 5/10,20/40,50/100,200/400)")
	dur := flag.Duration("sustained", 0, "sustained run length (default 60s, quick 20s)")
	rate := flag.Float64("rate", 0, "sustained arrivals per second (default 3)")
	mb := flag.Int("mb", 0, "throughput transfer size in MB (default 200, quick 50)")
	only := flag.String("only", "", "comma-separated scenarios to run: warm,cold,burst,sustained,memory,throughput,recording,reserved (default all)")
	flag.Parse()

	cfg := bench.DefaultConfig()
	if *quick {
		cfg = bench.QuickConfig()
	}
	if *n > 0 {
		cfg.Burst = *n
	}
	if *warm > 0 {
		cfg.Warm = *warm
	}
	if *cold > 0 {
		cfg.Cold = *cold
	}
	if *dur > 0 {
		cfg.For = *dur
	}
	if *rate > 0 {
		cfg.Rate = *rate
	}
	if *mb > 0 {
		cfg.ThroughputMB = *mb
	}
	if *sweep != "" {
		cfg.Sweep = nil
		for _, f := range strings.Split(*sweep, ",") {
			var q bench.QPS
			if _, err := fmt.Sscanf(f, "%d/%d", &q.QPS, &q.Burst); err != nil {
				return fmt.Errorf("-sweep %q: %w", f, err)
			}
			cfg.Sweep = append(cfg.Sweep, q)
		}
	}
	want := func(s string) bool { return *only == "" || slices.Contains(strings.Split(*only, ","), s) }

	cluster, err := bench.ClusterClient("make bench")
	if err != nil {
		return err
	}
	kube, kubeconfig := cluster.Kube, cluster.Kubeconfig
	// SIGTERM too (timeout(1), CI cancelling a job): the scenarios' own
	// clean-up deletes their namespaces, which a plain kill leaves behind
	// full of pods that load the next run.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	work, err := os.MkdirTemp("", "podgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin, err := podgatetest.Build(ctx, work)
	if err != nil {
		return err
	}
	units := float64(cfg.Warm+cfg.WarmSh+cfg.WarmBusy+cfg.Cold+cfg.Burst*len(cfg.Sweep)+cfg.ReservedBurst) + cfg.For.Seconds() + float64(cfg.MemConns*cfg.MemSessions) + 3 + 3
	prog := bench.NewProgress(os.Stderr, term.IsTerminal(int(os.Stderr.Fd())), units)
	r := &bench.Runner{Kube: kube, Kubeconfig: kubeconfig, Bin: bin, Work: work, Progress: prog, Log: prog.Logf,
		ExtraEnv: strings.Fields(os.Getenv("BENCH_PODGATE_ENV")), LogDir: os.Getenv("BENCH_PODGATE_LOGS")}

	res := &bench.Results{Config: cfg, Meta: bench.CollectMeta(ctx, kube, kubeconfig)}
	start := time.Now()
	fail := func(name string, err error) {
		if err != nil {
			res.Failures = append(res.Failures, name+": "+err.Error())
			prog.Logf("%s failed: %v", name, err)
		}
	}
	if want("warm") {
		var w bench.WarmRuns
		w, err = r.Warm(ctx, cfg)
		res.Warm, res.WarmSh, res.WarmBusy = w.Warm, w.Sh, w.Busy
		fail("warm sequential", err)
	}
	if want("cold") {
		res.Cold, err = r.Cold(ctx, cfg)
		fail("cold sequential", err)
	}
	if want("burst") {
		res.Sweep, err = r.Sweep(ctx, cfg)
		fail("burst sweep", err)
	}
	if want("sustained") {
		res.Sustained, err = r.Sustained(ctx, cfg)
		fail("sustained", err)
	}
	if want("memory") {
		res.Memory, err = r.Memory(ctx, cfg)
		fail("memory", err)
	}
	if want("throughput") {
		res.Transfers, err = r.Throughput(ctx, cfg)
		fail("throughput", err)
	}
	if want("recording") {
		res.Recording, err = r.Recording(ctx, cfg)
		fail("recording", err)
	}
	if want("reserved") {
		res.Reserved, err = r.Reserved(ctx, cfg)
		fail("two replicas, reserved pods", err)
	}
	prog.Done()
	res.Meta.Duration = time.Since(start)
	res.Meta.LoadEnd = bench.LoadAvg()
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	files, err := bench.Write(res, *out)
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Println(filepath.Clean(f))
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
