package scale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sync/errgroup"

	"github.com/podgate/podgate/bench"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

// benchUser is the one user every login is made as; the per-user limits
// are lifted so that one user stands for many.
const benchUser = "bench"

// replicaEnv is what every replica runs with: limits meant for crowds
// from many addresses lifted (all logins come from 127.0.0.1 as one
// user), the deployed lease duration (podgatetest's 5 s suits fail-over
// tests, not a measurement of steady API traffic). The login shell is the
// PodTemplate profile's default, /bin/sh -l.
var replicaEnv = []string{
	"PODGATE_MAX_CONNECTIONS=2000",
	"PODGATE_MAX_CONNECTIONS_PER_IP=0",
	"PODGATE_MAX_CONNECTIONS_PER_USER=0",
	"PODGATE_MAX_PODS_PER_USER=0",
	"PODGATE_MAX_PREAUTH=600",
	"PODGATE_MAX_WAITING=1000",
	"PODGATE_POD_CPU_REQUEST=10m",
	"PODGATE_POD_MEMORY_REQUEST=16Mi",
	"PODGATE_LEASE_DURATION=15s",
	"PODGATE_LOG_LEVEL=warn",
}

// replica is one running podgate with a dialer for it.
type replica struct {
	*podgatetest.Server
	id     string
	dialer *bench.Dialer
}

// startReplicas starts n replicas in the guest namespace with the
// ServiceAccount kubeconfig, the first one waiting for idle warm pods.
func startReplicas(ctx context.Context, bin, work, kubeconfig, ns string, n, idle int) ([]*replica, error) {
	out := make([]*replica, n)
	var g errgroup.Group
	for i := range n {
		g.Go(func() error {
			r, err := startReplica(ctx, bin, work, kubeconfig, ns, fmt.Sprintf("r%d", i), idle)
			out[i] = r
			return err
		})
	}
	if err := g.Wait(); err != nil {
		stopReplicas(out)
		return nil, err
	}
	return out, nil
}

func startReplica(ctx context.Context, bin, work, kubeconfig, ns, id string, idle int) (*replica, error) {
	dir, err := os.MkdirTemp(work, id+"-")
	if err != nil {
		return nil, err
	}
	srv, err := podgatetest.Start(ctx, podgatetest.Options{
		Bin: bin, Kubeconfig: kubeconfig, Namespace: ns, Dir: dir,
		Users: []string{benchUser}, Env: append(append([]string{}, replicaEnv...), "PODGATE_REPLICA_ID="+id),
		WaitIdle: idle, Timeout: 10 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("starting replica %s: %w", id, err)
	}
	key, err := os.ReadFile(srv.Keys[benchUser])
	if err == nil {
		var signer ssh.Signer
		if signer, err = ssh.ParsePrivateKey(key); err == nil {
			d := &bench.Dialer{Addr: srv.Addr(), User: benchUser, Signer: signer, Timeout: 90 * time.Second}
			return &replica{Server: srv, id: id, dialer: d}, nil
		}
	}
	_ = srv.Stop(20 * time.Second)
	return nil, fmt.Errorf("reading replica %s's bench key: %w", id, err)
}

// stopReplicas stops every started replica gracefully.
func stopReplicas(rs []*replica) {
	for _, r := range rs {
		if r != nil {
			_ = r.Stop(30 * time.Second)
		}
	}
}

// scrapeAll scrapes every replica's metrics.
func scrapeAll(ctx context.Context, rs []*replica) ([]podgatetest.Metrics, error) {
	out := make([]podgatetest.Metrics, len(rs))
	for i, r := range rs {
		m, err := r.Scrape(ctx)
		if err != nil {
			return nil, fmt.Errorf("scraping replica %s: %w", r.id, err)
		}
		out[i] = m
	}
	return out, nil
}

// leader is the index of the replica whose leader sync passes grew
// between two scrapes, or -1.
func leader(before, after []podgatetest.Metrics) int {
	for i := range after {
		if after[i].Value("podgate_pool_sync_duration_seconds", "role", "leader") > before[i].Value("podgate_pool_sync_duration_seconds", "role", "leader") {
			return i
		}
	}
	return -1
}

// saveProfile fetches one pprof profile from a replica (pprof is on in
// podgatetest's replicas, on loopback) into path.
func saveProfile(ctx context.Context, r *replica, kind, query, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+r.MetricsPort+"/debug/pprof/"+kind+query, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching the %s profile: %w", kind, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching the %s profile: %s", kind, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}
