package localcluster

import (
	"net"
	"os/exec"
)

// component is one daemon of the cluster.
type component struct {
	name string
	cmd  func() *exec.Cmd
	// afterStart, if set, runs as soon as the process has started (KWOK
	// joins its cgroup); its error fails the start.
	afterStart func(pid int) error
	// afterStop, if set, runs once the process has exited (KWOK's execs
	// that outlive it are killed).
	afterStop func()
}

// components returns the daemons in start order. Start waits between
// stages; see Serve.
func (o Options) components(ip net.IP) map[string]component {
	pki := func(f string) string { return o.path("pki", f) }
	c := map[string]component{}
	add := func(name, bin string, args ...string) {
		c[name] = component{name: name, cmd: func() *exec.Cmd { return exec.Command(bin, args...) }}
	}
	// etcd on loopback only, plain HTTP, without fsync: this is a
	// throwaway cluster and fsync dominates write latency on these disks.
	add("etcd", o.etcdBin(), joinFlags(
		"name", "podgate",
		"data-dir", o.path("etcd"),
		"listen-client-urls", "http://127.0.0.1:2379",
		"advertise-client-urls", "http://127.0.0.1:2379",
		"listen-peer-urls", "http://127.0.0.1:2380",
		"initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"initial-cluster", "podgate=http://127.0.0.1:2380",
		"unsafe-no-fsync", "true",
		"quota-backend-bytes", "4294967296",
	)...)
	add("kube-apiserver", o.k8sBin("kube-apiserver"), joinFlags(
		"etcd-servers", "http://127.0.0.1:2379",
		"advertise-address", ip.String(),
		"bind-address", "0.0.0.0",
		"secure-port", apiPort,
		"service-cluster-ip-range", serviceCIDR,
		"client-ca-file", pki("ca.crt"),
		"tls-cert-file", pki("apiserver.crt"),
		"tls-private-key-file", pki("apiserver.key"),
		"kubelet-client-certificate", pki("apiserver-kubelet-client.crt"),
		"kubelet-client-key", pki("apiserver-kubelet-client.key"),
		"kubelet-certificate-authority", pki("ca.crt"),
		"kubelet-preferred-address-types", "InternalIP,Hostname",
		"service-account-key-file", pki("sa.pub"),
		"service-account-signing-key-file", pki("sa.key"),
		"service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"authorization-mode", "Node,RBAC",
		"allow-privileged", "true",
		"enable-admission-plugins", "NodeRestriction",
		"profiling", "false",
		"max-requests-inflight", "800",
		"max-mutating-requests-inflight", "400",
	)...)
	add("kube-controller-manager", o.k8sBin("kube-controller-manager"), joinFlags(
		"kubeconfig", o.path("controller-manager.kubeconfig"),
		"authentication-kubeconfig", o.path("controller-manager.kubeconfig"),
		"authorization-kubeconfig", o.path("controller-manager.kubeconfig"),
		"bind-address", "127.0.0.1",
		"leader-elect", "false",
		"use-service-account-credentials", "true",
		"service-account-private-key-file", pki("sa.key"),
		"root-ca-file", pki("ca.crt"),
		"cluster-signing-cert-file", pki("ca.crt"),
		"cluster-signing-key-file", pki("ca.key"),
		"service-cluster-ip-range", serviceCIDR,
		// Without these the default ServiceAccount appears seconds late
		// and pods are refused until it exists.
		"kube-api-qps", "200",
		"kube-api-burst", "400",
		"concurrent-gc-syncs", "20",
		"terminated-pod-gc-threshold", "100",
	)...)
	add("kube-scheduler", o.k8sBin("kube-scheduler"), joinFlags(
		"kubeconfig", o.path("scheduler.kubeconfig"),
		"authentication-kubeconfig", o.path("scheduler.kubeconfig"),
		"authorization-kubeconfig", o.path("scheduler.kubeconfig"),
		"bind-address", "127.0.0.1",
		"leader-elect", "false",
	)...)
	add("containerd", "containerd", "--config", o.path("containerd", "config.toml"))
	add("kubelet", o.k8sBin("kubelet"), joinFlags(
		"config", o.path("kubelet", "config.yaml"),
		"kubeconfig", o.path("kubelet.kubeconfig"),
		"container-runtime-endpoint", "unix://"+o.ContainerdSocket(),
		"hostname-override", NodeName,
		"node-ip", ip.String(),
		"root-dir", o.path("kubelet", "root"),
		"cert-dir", o.path("kubelet", "pki"),
	)...)
	add("kube-proxy", o.k8sBin("kube-proxy"), joinFlags(
		"config", o.path("kube-proxy", "config.yaml"),
		"hostname-override", NodeName,
	)...)
	// kube-router runs only its network policy controller (iptables and
	// ipset), so that NetworkPolicy is enforced on the bridge CNI: no
	// routing, no service proxy (kube-proxy does that), no CNI config of
	// its own. It watches as the cluster admin, which is fine for a
	// throwaway test cluster.
	add("kube-router", o.kubeRouterBin(), joinFlags(
		"kubeconfig", o.Kubeconfig(),
		"hostname-override", NodeName,
		"run-firewall", "true",
		"run-router", "false",
		"run-service-proxy", "false",
		"run-loadbalancer", "false",
		"enable-cni", "false",
		"enable-ibgp", "false",
		"enable-overlay", "false",
		"enable-pod-egress", "false",
		"service-cluster-ip-range", serviceCIDR,
		"iptables-sync-period", "1m",
		"health-port", kubeRouterHealthPort,
		"metrics-port", "0",
	)...)
	// KWOK is optional: only started on request (see kwokcontrol.go).
	c["kwok"] = component{name: "kwok", cmd: o.kwokCommand, afterStart: joinKWOKCgroup, afterStop: func() { killKWOKCgroup() }}
	return c
}

// kubeRouterHealthPort serves kube-router's /healthz, which answers 200
// once its informers have synced.
const kubeRouterHealthPort = "20244"

// KubeRouterHealthURL answers while the cluster's NetworkPolicy enforcer
// runs; tests that need enforcement skip without it.
const KubeRouterHealthURL = "http://127.0.0.1:" + kubeRouterHealthPort + "/healthz"
