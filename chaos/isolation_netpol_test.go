package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/localcluster"
)

// netProbe is a POSIX sh function that tries a TCP connect with bash's
// /dev/tcp under timeout and prints NAME=open or NAME=closed. BusyBox nc -z
// reports open ports as closed here, so it is not used.
const netProbe = `probe() { if timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$2" "$3" 2>/dev/null; then echo "$1=open"; else echo "$1=closed"; fi; }
`

// probeScript probes, from inside a guest pod: another guest's listener,
// the API server by service address and on the node, the kubelet, etcd,
// the node's resolver, and a stand-in cluster DNS pod on port 53 and on
// another port.
func probeScript(guestIP, nodeIP, dnsIP string) string {
	return netProbe + fmt.Sprintf(`probe guest %s 8080
probe api_service "${KUBERNETES_SERVICE_HOST:-10.96.0.1}" "${KUBERNETES_SERVICE_PORT:-443}"
probe api_node %s 6443
probe kubelet %s 10250
probe etcd %s 2379
probe dns_node_resolver "$(awk '/^nameserver/{print $2; exit}' /etc/resolv.conf)" 53
probe dns_cluster %s 53
probe dns_pod_other_port %s 80
`, guestIP, nodeIP, nodeIP, nodeIP, dnsIP, dnsIP)
}

func parseProbes(out string) map[string]string {
	got := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && (v == "open" || v == "closed") {
			got[k] = v
		}
	}
	return got
}

// TestIsolationNetworkPolicy applies deploy/base's guest NetworkPolicy to a
// namespace of guest pods on the local cluster, where kube-router's
// firewall enforces it, and shows from inside a guest, with real ssh, what
// it blocks: the same probes run before the policy (so that "closed" is
// shown to mean something) and after. podgate's own paths into guests,
// exec and port-forward, must keep working, and podgate's self-check,
// started after the policy, must report the API server and kubelet
// unreachable.
func TestIsolationNetworkPolicy(t *testing.T) {
	env := kubetest.New(t)
	if kubetest.Kubeconfig() != localcluster.DefaultKubeconfig {
		t.Skip("needs the local cluster, whose kube-router enforces NetworkPolicy")
	}
	if resp, err := http.Get(localcluster.KubeRouterHealthURL); err != nil {
		t.Skipf("the local cluster runs no kube-router (%v): bring it up with this checkout's harness", err)
	} else {
		resp.Body.Close()
	}
	sc := NewScenario(t, "isolation", "guest NetworkPolicy enforced (kube-router)")
	ctx := context.Background()
	common := []string{"PODGATE_POOL_MIN=2", "PODGATE_POOL_MAX=3", "PODGATE_POD_CPU_REQUEST=10m",
		"PODGATE_PORT_FORWARDING=true", "PODGATE_MAX_PODS_PER_USER=0"}
	g := startGate(t, env, gateOpts{Users: []string{"alice", "bob"}, WaitIdle: 2, Env: common})
	pw := watchPods(t, env)

	dnsIP := startFakeDNS(t, env)

	// Bob's pod listens on 8080: the target of guest → guest, and of
	// podgate's port-forward.
	bob, _, err := g.dial("bob", "bob")
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	bobPod, _, err := output(bob, "echo $HOSTNAME")
	if err != nil {
		t.Fatal(err)
	}
	bobPod = strings.TrimSpace(bobPod)
	listener, err := bob.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	if err := listener.Start("mkdir -p /tmp/www && echo served > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www"); err != nil {
		t.Fatal(err)
	}
	// The listener starts in the background; wait, bounded, inside the
	// pod (with bash: the exec wrapper's sh may be dash, without /dev/tcp).
	up, _, err := output(bob, `exec bash -c 'for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && { echo up; exit 0; }; sleep 0.1; done; echo down'`)
	if err != nil || strings.TrimSpace(up) != "up" {
		t.Fatalf("bob's listener did not come up: %q %v", up, err)
	}
	var guestIP, nodeIP string
	for _, p := range pw.pods() {
		if p.Name == bobPod {
			guestIP, nodeIP = p.Status.PodIP, p.Status.HostIP
		}
	}
	if guestIP == "" || nodeIP == "" {
		t.Fatalf("bob's pod %q: no pod or host IP in the cache", bobPod)
	}
	script := probeScript(guestIP, nodeIP, dnsIP)
	probe := func() (map[string]string, string) {
		out, e, code := runSSH(g.SSH("alice", "alice", script), "", time.Minute)
		if code != 0 {
			t.Logf("probe exit %d: %s", code, e)
		}
		return parseProbes(out), out
	}

	before, raw := probe()
	sc.Figure("before the policy", "%s", strings.Join(strings.Fields(raw), " "))
	sc.Check(before["guest"] == "open" && before["api_service"] == "open" && before["api_node"] == "open" && before["kubelet"] == "open" &&
		before["dns_cluster"] == "open" && before["dns_pod_other_port"] == "open",
		"without the policy the probes see open ports (so closed means blocked)", "%v", before)

	pol := guestPolicy(t, env.Namespace)
	applied := time.Now()
	if _, err := env.Client.NetworkingV1().NetworkPolicies(env.Namespace).Create(ctx, pol, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// kube-router applies a policy within a sync; no event says it has,
	// so the probe is repeated, bounded, until the API server is blocked.
	var after map[string]string
	for {
		after, raw = probe()
		if after["api_service"] == "closed" || time.Since(applied) > 90*time.Second {
			break
		}
	}
	sc.Figure("policy created → enforced", "%.1f s", time.Since(applied).Seconds())
	sc.Figure("after the policy", "%s", strings.Join(strings.Fields(raw), " "))
	sc.Check(after["guest"] == "closed", "guest → another guest is blocked", "%q", after["guest"])
	sc.Check(after["api_service"] == "closed", "guest → API server's service address is blocked", "%q", after["api_service"])
	sc.Check(after["api_node"] == "closed", "guest → API server on the node (:6443) is blocked", "%q", after["api_node"])
	sc.Check(after["kubelet"] == "closed", "guest → kubelet (:10250) is blocked", "%q", after["kubelet"])
	sc.Check(after["etcd"] == "closed", "guest → etcd (:2379) is blocked (it also listens on loopback only)", "before %q, after %q", before["etcd"], after["etcd"])
	sc.Check(after["dns_cluster"] == "open", "guest → cluster DNS pods on :53 is allowed, as the policy intends", "%q", after["dns_cluster"])
	sc.Check(after["dns_pod_other_port"] == "closed", "guest → the DNS pods on any other port is blocked", "%q", after["dns_pod_other_port"])
	sc.Check(after["dns_node_resolver"] == "closed", "guest → the node's own resolver (a private address, not the cluster DNS) is blocked", "before %q, after %q", before["dns_node_resolver"], after["dns_node_resolver"])

	// podgate's own paths into guests: exec (this very session) and
	// port-forward into bob's pod.
	out, _, code := runSSH(g.SSH("bob", "bob", "echo exec-ok"), "", time.Minute)
	sc.Check(code == 0 && strings.TrimSpace(out) == "exec-ok", "podgate's exec into a guest still works", "exit %d, %q", code, out)
	fwd, err := bob.Dial("tcp", "localhost:8080")
	if err == nil {
		_, err = fmt.Fprintf(fwd, "GET /index.html HTTP/1.0\r\n\r\n")
	}
	var status string
	if err == nil {
		resp, rerr := http.ReadResponse(bufio.NewReader(fwd), nil)
		if rerr == nil {
			status = resp.Status
			resp.Body.Close()
		}
		err = rerr
		fwd.Close()
	}
	sc.Check(err == nil && strings.HasPrefix(status, "200"), "podgate's port-forward into a guest still works", "%q %v", status, err)

	// The self-check, run by a podgate started after the policy, reports
	// the control plane unreachable.
	g2 := startGate(t, env, gateOpts{WaitIdle: 1, Keys: g, ReplicaID: "check", Env: common})
	checks := waitGuestChecks(g2, 60*time.Second)
	sc.Figure("podgate_guest_check after the policy", "%v", checks)
	sc.Check(checks["api_service"] == "1" && checks["kubelet"] == "1",
		"the self-check reports the API server and the kubelet unreachable", "%v", checks)
	sc.Check(checks["sa_token"] == "1" && checks["non_root"] == "1" && checks["memory"] == "1",
		"the self-check reports no token, non-root and a memory limit", "%v", checks)
	sc.Figure("self-check PID limit", "%s (podPidsLimit %d is set on the pod's cgroup)", checks["pids"], localcluster.PodPidsLimit)
}

// guestPolicy reads deploy/base/networkpolicy.yaml, placed in ns.
func guestPolicy(t *testing.T, ns string) *networkingv1.NetworkPolicy {
	t.Helper()
	f, err := os.Open("../deploy/base/networkpolicy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var pol networkingv1.NetworkPolicy
	if err := yaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&pol); err != nil {
		t.Fatal(err)
	}
	pol.Namespace = ns
	return &pol
}

// startFakeDNS runs a stand-in for the cluster DNS (the local cluster has
// none): a pod labelled k8s-app=kube-dns in kube-system listening on TCP 53
// and 80, which the policy's DNS rule selects. It is deleted when the test
// ends, and its IP returned.
func startFakeDNS(t *testing.T, env *kubetest.Env) string {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "podgate-test-dns-" + rand.String(5), Namespace: "kube-system",
			Labels: map[string]string{"k8s-app": "kube-dns", "podgate.io/test": "networkpolicy"},
		},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1000),
				Sysctls: []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}},
			},
			Containers: []corev1.Container{{
				Name: "dns", Image: localcluster.BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "mkdir -p /tmp/w && httpd -p 53 -h /tmp/w && exec httpd -f -p 80 -h /tmp/w"},
			}},
		},
	}
	if _, err := env.Client.CoreV1().Pods("kube-system").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.CoreV1().Pods("kube-system").Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	})
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	sys := &kubetest.Env{Config: env.Config, Client: env.Client, Namespace: "kube-system"}
	p, err := sys.WaitPodReady(wctx, pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	return p.Status.PodIP
}

// waitGuestChecks reads podgate_guest_check{profile=default} from g's
// metrics until every check has a value or timeout passes; the check runs
// in another process, so this is a bounded poll of its metrics.
func waitGuestChecks(g *gate, timeout time.Duration) map[string]string {
	deadline := time.Now().Add(timeout)
	names := []string{"pids", "memory", "sa_token", "non_root", "api_service", "kubelet"}
	for {
		got := map[string]string{}
		m, err := g.Scrape(context.Background())
		if err == nil {
			for _, n := range names {
				if len(m.Find("podgate_guest_check", "profile", "default", "check", n)) > 0 {
					got[n] = fmt.Sprint(m.Value("podgate_guest_check", "profile", "default", "check", n))
				}
			}
		}
		if len(got) == len(names) || time.Now().After(deadline) {
			return got
		}
		time.Sleep(500 * time.Millisecond)
	}
}
