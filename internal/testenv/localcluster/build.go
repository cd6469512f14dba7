package localcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/podgate/podgate/internal/testenv/hosttools"
)

// EnsurePackages installs the Debian packages of the missing tools the
// cluster needs (those of the host-tool list for "cluster": the container
// runtime, CNI plugins, firewall tools, image tools) when running as root,
// and otherwise names them in the error.
func (o Options) EnsurePackages(ctx context.Context) error {
	tools, err := hosttools.Load()
	if err != nil {
		return err
	}
	var missing []string
	for _, t := range tools.Missing(hosttools.ForCluster) {
		if t.Package != hosttools.NotDebian && !slices.Contains(missing, t.Package) {
			missing = append(missing, t.Package)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing Debian packages (run as root to install them): apt-get install %s", strings.Join(missing, " "))
	}
	o.Log.Info("installing Debian packages", "packages", missing)
	if err := o.run(ctx, "", nil, "apt-get", "update", "-qq"); err != nil {
		return fmt.Errorf("apt-get update: %w", err)
	}
	args := append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)
	if err := o.run(ctx, "", []string{"DEBIAN_FRONTEND=noninteractive"}, "apt-get", args...); err != nil {
		return fmt.Errorf("installing %s: %w", strings.Join(missing, " "), err)
	}
	return nil
}

// k8sBinaries are built from the nested module k8sbuild.
var k8sBinaries = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"}

// EnsureBinaries builds whatever pinned binary is missing from the cache.
// A cold build of all of them takes about 10 minutes on 2 cores; after that
// this is a few stat calls.
func (o Options) EnsureBinaries(ctx context.Context) error {
	if _, err := os.Stat(o.etcdBin()); err != nil {
		o.Log.Info("building etcd from the Go module proxy", "version", EtcdVersion)
		if err := o.goBuild(ctx, filepath.Join(o.SourceDir, "etcdbuild"), "go.etcd.io/etcd/server/v3", o.etcdBin(), ""); err != nil {
			return err
		}
	}
	if _, err := os.Stat(o.kubeRouterBin()); err != nil {
		o.Log.Info("building kube-router from the Go module proxy", "version", KubeRouterVersion)
		if err := o.goBuild(ctx, filepath.Join(o.SourceDir, "kuberouterbuild"), "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router", o.kubeRouterBin(), ""); err != nil {
			return err
		}
	}
	var ld []string
	for _, p := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		ld = append(ld, "-X", p+".gitVersion="+KubernetesVersion, "-X", p+".gitMajor=1",
			"-X", p+".gitMinor=33", "-X", p+".gitTreeState=clean")
	}
	for _, name := range k8sBinaries {
		if _, err := os.Stat(o.k8sBin(name)); err == nil {
			continue
		}
		o.Log.Info("building from the Go module proxy (cold: minutes)", "binary", name, "version", KubernetesVersion)
		if err := o.goBuild(ctx, filepath.Join(o.SourceDir, "k8sbuild"), "k8s.io/kubernetes/cmd/"+name, o.k8sBin(name), strings.Join(ld, " ")); err != nil {
			return err
		}
	}
	return nil
}

// goBuild builds pkg in the module at dir into out, via a temporary file so
// that an interrupted build never leaves a truncated binary in the cache.
func (o Options) goBuild(ctx context.Context, dir, pkg, out, ldflags string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	args := []string{"build", "-trimpath", "-o", tmp}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	args = append(args, pkg)
	if err := o.run(ctx, dir, []string{"CGO_ENABLED=0", "GOFLAGS=-mod=mod"}, "go", args...); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("building %s: %w", pkg, err)
	}
	return os.Rename(tmp, out)
}

// run runs a command with output going to the harness's stderr, so a
// person sees build and install progress.
func (o Options) run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// output runs a command and returns its combined output, for error text.
func output(ctx context.Context, name string, args ...string) (string, error) {
	b, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(b), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}
