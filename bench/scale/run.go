package scale

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Runner runs the scale benchmark on a cluster that already has its fake
// nodes (make bench-scale gives it them through the harness).
type Runner struct {
	// Kube and Admin are the cluster admin's client and configuration:
	// the benchmark's own setup and the API server's metrics use them,
	// podgate never does.
	Kube  kubernetes.Interface
	Admin *rest.Config
	// Bin is the podgate binary; Work a scratch directory.
	Bin, Work string
	// DeployDir is the repository's deploy/ (RBAC and ServiceAccount).
	DeployDir string
	// Out receives the profiles; Stamp names them.
	Out, Stamp string
	Log        func(format string, args ...any)
}

// Run measures every size of cfg, then the burst and the profiles at the
// largest, and cleans up what it created whatever happens.
func (r *Runner) Run(ctx context.Context, cfg Config, res *Results) error {
	ns := newNamespaces()
	r.Log("namespaces %s and %s", ns.Podgate, ns.Guests)
	defer r.deleteNamespaces(ns)
	if err := createNamespaces(ctx, r.Kube, ns); err != nil {
		return err
	}
	if err := applyRBAC(ctx, r.Kube, r.DeployDir, ns); err != nil {
		return fmt.Errorf("applying deploy/'s RBAC: %w", err)
	}
	kc := filepath.Join(r.Work, "podgate.kubeconfig")
	if err := tokenKubeconfig(ctx, r.Kube, r.Admin, ns, kc); err != nil {
		return err
	}
	// The pool starts empty, so that the first size's fill is timed too.
	if err := resize(ctx, r.Kube, ns.Guests, 0); err != nil {
		return fmt.Errorf("creating the default profile: %w", err)
	}
	r.Log("starting %d replicas as system:serviceaccount:%s:podgate", cfg.Replicas, ns.Podgate)
	reps, err := startReplicas(ctx, r.Bin, r.Work, kc, ns.Guests, cfg.Replicas, -1)
	if err != nil {
		return err
	}
	defer stopReplicas(reps)
	defer func() {
		w, err := r.saveWarnings(reps)
		res.Warnings = w
		if err != nil {
			res.Failures = append(res.Failures, err.Error())
		}
	}()
	m := &measurer{kube: r.Kube, ns: ns.Guests, reps: reps, log: r.Log}
	for i, size := range cfg.Sizes {
		s, err := m.size(ctx, cfg, size)
		if err != nil {
			return fmt.Errorf("pool of %d: %w", size, err)
		}
		if i == len(cfg.Sizes)-1 {
			res.Profiles, err = r.profiles(ctx, m, cfg, &s)
			if err != nil {
				res.Failures = append(res.Failures, "profiles: "+err.Error())
			}
		}
		res.Sizes = append(res.Sizes, s)
	}
	if cfg.Burst > 0 {
		b, err := m.burst(ctx, cfg)
		if err != nil {
			return fmt.Errorf("burst: %w", err)
		}
		res.Burst = b
	}
	return nil
}

// profiles takes the leader's CPU profile during a second round of
// logins at the largest size and its heap after, and summarises both.
func (r *Runner) profiles(ctx context.Context, m *measurer, cfg Config, s *Size) ([]Profile, error) {
	idx := -1
	for i, u := range s.Replicas {
		if u.Leader {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("no replica was seen leading")
	}
	lead := m.reps[idx]
	cpuFile := filepath.Join(r.Out, r.Stamp+"-leader-cpu.pprof")
	heapFile := filepath.Join(r.Out, r.Stamp+"-leader-heap.pprof")
	r.Log("profiling leader %s for %v while logins run", lead.id, cfg.ProfileFor)
	errc := make(chan error, 1)
	go func() {
		errc <- saveProfile(ctx, lead, "profile", fmt.Sprintf("?seconds=%d", int(cfg.ProfileFor.Seconds())), cpuFile)
	}()
	pctx, cancel := context.WithTimeout(ctx, cfg.ProfileFor)
	m.loginsUntil(pctx)
	cancel()
	if err := <-errc; err != nil {
		return nil, err
	}
	if err := saveProfile(ctx, lead, "heap", "", heapFile); err != nil {
		return nil, err
	}
	var out []Profile
	for _, p := range []Profile{{Kind: "cpu", File: cpuFile}, {Kind: "heap (in use)", File: heapFile}} {
		p.Top = pprofTop(ctx, r.Bin, p.File)
		out = append(out, p)
	}
	return out, nil
}

// deleteNamespaces deletes the run's namespaces, guest pods first with no
// grace period, and waits (at most 10 minutes) until they are gone.
func (r *Runner) deleteNamespaces(ns Namespaces) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	grace := int64(0)
	_ = r.Kube.CoreV1().Pods(ns.Guests).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &grace}, metav1.ListOptions{})
	for _, name := range []string{ns.Guests, ns.Podgate} {
		if err := r.Kube.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			r.Log("deleting namespace %s: %v", name, err)
		}
	}
	for _, name := range []string{ns.Guests, ns.Podgate} {
		if err := waitGone(ctx, r.Kube, name); err != nil {
			r.Log("namespace %s: %v", name, err)
		}
	}
}

// waitGone waits by watch until namespace name no longer exists.
func waitGone(ctx context.Context, kube kubernetes.Interface, name string) error {
	nss := kube.CoreV1().Namespaces()
	w, err := nss.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		return err
	}
	defer w.Stop()
	if _, err := nss.Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return nil
	}
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("watch ended before the namespace was gone")
			}
			if ev.Type == watch.Deleted {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("still terminating: %w", ctx.Err())
		}
	}
}
