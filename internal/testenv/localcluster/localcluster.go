// Package localcluster brings up a real single-node Kubernetes cluster on
// this machine for podgate's tests, benchmarks and `make run`: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, a
// kubelet driving containerd and runc, and kube-router's firewall, which
// enforces NetworkPolicy, with locally built guest images; optionally KWOK,
// which simulates many more nodes (see kwok.go).
//
// Everything comes from the Go module proxy (the Kubernetes and etcd
// binaries, built once and cached by version) and Debian packages
// (containerd, runc, CNI plugins, image tools). No registry is needed: the
// pause, busybox and Debian guest images are built here and imported into
// containerd.
//
// The daemons run as children of one supervisor process ("serve") that holds
// an exclusive lock, so a second cluster is refused, and that tears
// everything down on SIGTERM. Starting also removes whatever a killed
// earlier run left behind: processes, mounts, the bridge, iptables chains
// and kubepods cgroups.
package localcluster

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// Pinned versions. The Kubernetes version is held at 1.33: from 1.35 on the
// kubelet refuses cgroup v1, which these machines use.
const (
	KubernetesVersion = "v1.33.13"
	EtcdVersion       = "v3.5.21"
	// KubeRouterVersion is the NetworkPolicy enforcer (its firewall
	// only). It is the one version the Go module proxy serves here;
	// security advisories are reported against it, which is acceptable
	// for an enforcer on a throwaway test cluster (see kuberouterbuild).
	KubeRouterVersion = "v2.1.0"
)

// Fixed network settings of the one cluster a machine can run.
const (
	NodeName    = "podgate-node"
	bridgeName  = "podgate0"
	podSubnet   = "10.244.0.0/24"
	serviceCIDR = "10.96.0.0/16"
	serviceIP   = "10.96.0.1"
	apiPort     = "6443"
)

// DefaultStateDir is where a cluster's PKI, configs, data and logs live. It
// is removed by Down.
const DefaultStateDir = "/var/lib/podgate-localcluster"

// DefaultKubeconfig is the admin kubeconfig of a cluster in DefaultStateDir;
// Options.Kubeconfig gives it for any state directory.
const DefaultKubeconfig = DefaultStateDir + "/admin.kubeconfig"

// Guest images the harness builds and imports.
const (
	PauseImage   = "localhost/podgate-pause:local"
	BusyboxImage = "localhost/podgate-busybox:local"
	DebianImage  = "localhost/podgate-debian:local"
)

// Options configure the harness.
type Options struct {
	// StateDir holds everything of a running cluster; see DefaultStateDir.
	StateDir string
	// CacheDir holds built binaries and image archives across clusters.
	CacheDir string
	// SourceDir is this package's directory in the podgate checkout; the
	// nested build modules and the pause program live under it.
	SourceDir string
	// Log receives progress for the person running the harness.
	Log *slog.Logger
	// KWOKNodes, when positive, makes Up start KWOK with this many fake
	// nodes (see kwok.go); zero runs the cluster without KWOK.
	KWOKNodes int
}

// DefaultCacheDir is $XDG_CACHE_HOME/podgate, or ~/.cache/podgate.
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "podgate")
	}
	return filepath.Join(os.TempDir(), "podgate-cache")
}

func (o Options) path(elem ...string) string {
	return filepath.Join(append([]string{o.StateDir}, elem...)...)
}

// Kubeconfig is the admin kubeconfig of the cluster in o.StateDir.
func (o Options) Kubeconfig() string { return o.path("admin.kubeconfig") }

func (o Options) lockPath() string  { return o.StateDir + ".lock" }
func (o Options) readyPath() string { return o.path("ready") }
func (o Options) logDir() string    { return o.path("logs") }

func (o Options) k8sBin(name string) string {
	return filepath.Join(o.CacheDir, "bin", "k8s-"+KubernetesVersion, name)
}

func (o Options) etcdBin() string {
	return filepath.Join(o.CacheDir, "bin", "etcd-"+EtcdVersion, "etcd")
}

func (o Options) kubeRouterBin() string {
	return filepath.Join(o.CacheDir, "bin", "kube-router-"+KubeRouterVersion, "kube-router")
}

// KubectlPath is the cached kubectl matching the cluster's version.
func (o Options) KubectlPath() string { return o.k8sBin("kubectl") }

// nodeIP picks the address the node advertises: the first IPv4 address of
// the interface that holds the default route (read from /proc/net/route, so
// nothing is sent anywhere), so that pods reach the API server through it.
func nodeIP() net.IP {
	if b, err := os.ReadFile("/proc/net/route"); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 2 || f[1] != "00000000" {
				continue
			}
			if ifc, err := net.InterfaceByName(f[0]); err == nil {
				addrs, _ := ifc.Addrs()
				for _, a := range addrs {
					if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
						return n.IP.To4()
					}
				}
			}
		}
	}
	return net.ParseIP("127.0.0.1").To4()
}
