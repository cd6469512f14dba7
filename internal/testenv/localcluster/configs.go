package localcluster

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// writeConfigs writes the kubeconfigs and the containerd, CNI and kubelet
// configuration under the state directory.
func (o Options) writeConfigs(ip net.IP) error {
	ca, err := os.ReadFile(o.path("pki", "ca.crt"))
	if err != nil {
		return err
	}
	server := "https://127.0.0.1:" + apiPort
	for _, kc := range []struct{ file, cert, user string }{
		{"admin.kubeconfig", "admin", "admin"},
		{"controller-manager.kubeconfig", "controller-manager", "system:kube-controller-manager"},
		{"scheduler.kubeconfig", "scheduler", "system:kube-scheduler"},
		{"kube-proxy.kubeconfig", "kube-proxy", "system:kube-proxy"},
		{"kubelet.kubeconfig", "kubelet-client", "system:node:" + NodeName},
	} {
		data, err := o.kubeconfig(server, ca, kc.cert, kc.user)
		if err != nil {
			return err
		}
		if err := writeFile(o.path(kc.file), data, 0o600); err != nil {
			return err
		}
	}
	files := map[string]string{
		"containerd/config.toml":        o.containerdConfig(),
		"cni/net.d/10-podgate.conflist": o.cniConfig(),
		"kubelet/config.yaml":           o.kubeletConfig(),
		"kube-proxy/config.yaml":        o.kubeProxyConfig(),
	}
	for name, content := range files {
		if err := writeFile(o.path(name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (o Options) kubeconfig(server string, ca []byte, cert, user string) ([]byte, error) {
	crt, err := os.ReadFile(o.path("pki", cert+".crt"))
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(o.path("pki", cert+".key"))
	if err != nil {
		return nil, err
	}
	b64 := base64.StdEncoding.EncodeToString
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: podgate-local
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: podgate-local
  context:
    cluster: podgate-local
    user: %s
current-context: podgate-local
`, server, b64(ca), user, b64(crt), b64(key), user)), nil
}

// containerdConfig holds the settings the notes call not optional on these
// machines: restrict_oom_score_adj (no CAP_SYS_RESOURCE), netns mounts under
// the state dir, cgroupfs, and a local pause image. runc's state goes under
// the state directory too, so that teardown leaves nothing in /run.
func (o Options) containerdConfig() string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[debug]
  level = "info"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
`, o.path("containerd", "root"), o.path("containerd", "state"), o.ContainerdSocket(),
		PauseImage, o.path("runc"), o.path("cni", "net.d"))
}

// ContainerdSocket is the local cluster's containerd, where images are
// imported (the deploy test removes the image it imported there).
func (o Options) ContainerdSocket() string { return o.path("containerd", "containerd.sock") }

// cniConfig is the bridge network. host-local keeps its allocations in
// the state directory (ipamDir), not in /var/lib/cni: a pod killed with the
// cluster never gets its CNI DEL, and leaked addresses outliving the
// cluster filled the /24 after a day of runs, so that no pod could start.
func (o Options) cniConfig() string {
	return `{
  "cniVersion": "0.4.0",
  "name": "podgate",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "` + bridgeName + `",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "` + o.ipamDir() + `",
        "ranges": [[{"subnet": "` + podSubnet + `"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`
}

// ipamDir holds host-local's address allocations.
func (o Options) ipamDir() string { return o.path("cni", "ipam") }

// legacyIPAMDir is where earlier versions of the harness let host-local
// keep them (its default for the network "podgate").
const legacyIPAMDir = "/var/lib/cni/networks/podgate"

// kubeletConfig: webhook authn/authz against the cluster CA, no read-only
// port, cgroupfs on cgroup v1, no swap check, image GC that never collects
// (imported images cannot be pulled again), no cluster DNS, and a PID
// limit per pod (podPidsLimit), so that a fork bomb in one guest pod
// cannot exhaust the node's PIDs and take the kubelet and every other
// user's session down with it. Volume usage is measured every 10 s
// instead of every minute, so that an emptyDir over its sizeLimit is
// evicted within seconds rather than a minute or more.
func (o Options) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %q
authorization:
  mode: Webhook
tlsCertFile: %q
tlsPrivateKeyFile: %q
readOnlyPort: 0
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  nodefs.inodesFree: "1%%"
resolvConf: /etc/resolv.conf
maxPods: 250
podPidsLimit: %d
volumeStatsAggPeriod: 10s
serializeImagePulls: false
nodeStatusUpdateFrequency: 4s
containerLogMaxSize: 10Mi
`, o.path("pki", "ca.crt"), o.path("pki", "kubelet-serving.crt"), o.path("pki", "kubelet-serving.key"), PodPidsLimit)
}

// PodPidsLimit is the local cluster's kubelet podPidsLimit: processes and
// threads one pod may have at once. It is far above what a login shell,
// a build or a test suite needs, and far below the node's pid_max (32768
// here), which every pod and the cluster's daemons share.
const PodPidsLimit = 512

func (o Options) kubeProxyConfig() string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: %q
clusterCIDR: %q
conntrack:
  maxPerCore: 0
`, o.path("kube-proxy.kubeconfig"), podSubnet)
}

// logFile opens a component's log file for appending.
func (o Options) logFile(name string) (*os.File, error) {
	if err := os.MkdirAll(o.logDir(), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(o.logDir(), name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}

// joinFlags renders name=value flags in a stable order.
func joinFlags(kv ...string) []string {
	out := make([]string, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, "--"+kv[i]+"="+kv[i+1])
	}
	return out
}
