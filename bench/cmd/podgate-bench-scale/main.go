// Command podgate-bench-scale runs podgate's scale benchmark (issue 16):
// three replicas under podgate's real ServiceAccount serve pools of
// thousands of pods on KWOK's fake nodes. It writes a Markdown report, CSV
// and plots under the output directory. `make bench-scale` gives the local
// cluster its fake nodes and runs it; KUBECONFIG must be the cluster
// admin's (for the setup and the API server's metrics; podgate never uses
// it).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podgate/podgate/bench"
	"github.com/podgate/podgate/bench/scale"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "podgate-bench-scale:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := scale.DefaultConfig()
	sizes := flag.String("sizes", "", "comma-separated pool sizes, smallest first (default 20,500,5000; also SCALE_SIZES)")
	out := flag.String("out", "bench/results/scale", "output directory")
	flag.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "fake nodes the cluster has (for the report)")
	flag.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "podgate replicas")
	flag.IntVar(&cfg.Logins, "logins", cfg.Logins, "sequential warm logins per size")
	flag.IntVar(&cfg.Burst, "burst", cfg.Burst, "logins at once at the largest size (0: no burst)")
	flag.DurationVar(&cfg.Baseline, "baseline", cfg.Baseline, "quiet window measuring background API traffic")
	flag.DurationVar(&cfg.ProfileFor, "profile", cfg.ProfileFor, "CPU profile length at the largest size")
	flag.Parse()
	if *sizes == "" {
		*sizes = os.Getenv("SCALE_SIZES")
	}
	if *sizes != "" {
		cfg.Sizes = nil
		for _, f := range strings.Split(*sizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("-sizes: %q is not a pool size", f)
			}
			cfg.Sizes = append(cfg.Sizes, n)
		}
	}

	cluster, err := bench.ClusterClient("make bench-scale")
	if err != nil {
		return err
	}
	kube, kubeconfig := cluster.Kube, cluster.Kubeconfig
	// SIGTERM too: the runner's clean-up deletes its namespaces, which a
	// plain kill would leave behind full of pods.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	work, err := os.MkdirTemp("", "podgate-bench-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin, err := podgatetest.Build(ctx, work)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	logger := log.New(os.Stderr, "bench-scale: ", log.Ltime)
	res := &scale.Results{Config: cfg, Meta: bench.CollectMeta(ctx, kube, kubeconfig)}
	stamp := res.Meta.Date.UTC().Format("2006-01-02-1504")
	r := &scale.Runner{Kube: kube, Admin: cluster.Config, Bin: bin, Work: work, DeployDir: "deploy", Out: *out, Stamp: stamp, Log: logger.Printf}
	start := time.Now()
	if err := r.Run(ctx, cfg, res); err != nil {
		// What was measured before the failure is still reported.
		res.Failures = append(res.Failures, err.Error())
		logger.Printf("run failed: %v", err)
	}
	res.Meta.Duration = time.Since(start)
	res.Meta.LoadEnd = bench.LoadAvg()
	files, err := scale.Write(res, *out, stamp)
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Println(filepath.Clean(f))
	}
	if len(res.Failures) > 0 {
		return fmt.Errorf("%d measurement(s) failed; see the report", len(res.Failures))
	}
	return nil
}
