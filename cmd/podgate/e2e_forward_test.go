package main

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podgate/podgate/internal/testenv/hosttools"
	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/localcluster"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

// webScript serves /index.html and /cgi-bin/ip, which answers with the
// address the request came from, with BusyBox httpd on port 8080.
const webScript = `mkdir -p /tmp/www/cgi-bin && echo hello-from-web >/tmp/www/index.html &&
printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho "$REMOTE_ADDR"\n' >/tmp/www/cgi-bin/ip &&
chmod 755 /tmp/www/cgi-bin/ip && exec httpd -f -p 8080 -h /tmp/www`

// startWeb runs the HTTP server pod in ns and two Services in front of it:
// web, which the test's rules allow, and secret, which they do not. It
// returns the pod and both ClusterIPs. Services work here because the local
// cluster runs kube-proxy; it has no cluster DNS, so names are given to
// guest pods with hostAliases.
func startWeb(t *testing.T, ns *kubetest.Env) (pod *corev1.Pod, webIP, secretIP string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kubetest.Timeout)
	defer cancel()
	p := kubetest.IdlePod("web", kubetest.BusyboxImage)
	p.Labels = map[string]string{"app": "web"}
	p.Spec.Containers[0].Command = []string{"/bin/sh", "-c", webScript}
	p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 1,
	}
	if _, err := ns.Client.CoreV1().Pods(ns.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ips := map[string]string{}
	for _, name := range []string{"web", "secret"} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "web"},
				Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
			},
		}
		created, err := ns.Client.CoreV1().Services(ns.Namespace).Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ips[name] = created.Spec.ClusterIP
	}
	ready, err := ns.WaitPodReady(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	return ready, ips["web"], ips["secret"]
}

// sshForward starts `ssh -N` with forwarding flags as alice on login, its
// stderr (at level INFO, where ssh reports refused channels) collected.
func (s *server) sshForward(t *testing.T, login string, flags ...string) *podgatetest.SafeBuffer {
	t.Helper()
	args := append([]string{"-o", "LogLevel=INFO"}, s.sshArgs(s.key, append([]string{"-p", s.port, "-N", "-o", "ExitOnForwardFailure=yes"}, flags...)...)...)
	cmd := exec.Command("ssh", append(args, login+"@127.0.0.1")...)
	stderr := &podgatetest.SafeBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return stderr
}

// curl runs the real curl with args, bounded, and returns its output and
// exit status.
func curl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, _, code := runCmd(t, exec.Command("curl", append([]string{"-sS", "--max-time", "30"}, args...)...), nil)
	return strings.TrimSpace(out), code
}

// enforcingNetworkPolicy skips the test unless the cluster is the local one
// with kube-router, which enforces NetworkPolicy.
func enforcingNetworkPolicy(t *testing.T) {
	t.Helper()
	if kubetest.Kubeconfig() != localcluster.DefaultKubeconfig {
		t.Skip("needs the local cluster, whose kube-router enforces NetworkPolicy")
	}
	resp, err := http.Get(localcluster.KubeRouterHealthURL)
	if err != nil {
		t.Skipf("the local cluster runs no kube-router (%v)", err)
	}
	resp.Body.Close()
}

// claimedPod returns the one claimed pod of a profile.
func claimedPod(t *testing.T, s *server, profile string) *corev1.Pod {
	t.Helper()
	pods, err := s.env.Client.CoreV1().Pods(s.env.Namespace).List(context.Background(), metav1.ListOptions{
		LabelSelector: "podgate.io/profile=" + profile + ",podgate.io/state=claimed",
	})
	if err != nil {
		t.Fatal(err)
	}
	var live []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	if len(live) != 1 {
		t.Fatalf("%d claimed pods of profile %s, want 1", len(live), profile)
	}
	return &live[0]
}

// TestForwardIntoCluster: ssh -L and ssh -D (through curl's
// --socks5-hostname) reach a Service in another namespace from inside the
// user's pod, as far as the profile's rules allow, and no further.
func TestForwardIntoCluster(t *testing.T) {
	env := kubetest.New(t)
	hosttools.Require(t, "curl")
	other := kubetest.New(t)
	web, webIP, secretIP := startWeb(t, other)
	webName := "web." + other.Namespace + ".svc.cluster.local"
	secretName := "secret." + other.Namespace + ".svc.cluster.local"
	s := startPodgate(t, env, "PODGATE_PORT_FORWARDING=true")

	guest := corev1.PodSpec{
		Containers: []corev1.Container{{Name: "main", Image: kubetest.DebianImage, ImagePullPolicy: corev1.PullNever}},
		// The pod's own view of these names: the local cluster has no
		// DNS. evil.rebind.test is an allowed name that leads to the
		// pod's loopback, as a rebinding attacker's DNS would.
		HostAliases: []corev1.HostAlias{
			{IP: webIP, Hostnames: []string{webName}},
			{IP: secretIP, Hostnames: []string{secretName}},
			{IP: "127.0.0.1", Hostnames: []string{"evil.rebind.test"}},
		},
	}
	rules := fmt.Sprintf("%s/32:80, %s:80, *.rebind.test:80", webIP, webName)
	createProfile(t, s, "fwd", selectableNoMin(map[string]string{"podgate.io/port-forwarding": "true", "podgate.io/forward-allow": rules}), guest, echoesAs(t, s, "alice+fwd"))

	t.Run("ssh -L by address and by name", func(t *testing.T) {
		byIP, byName := freePort(t), freePort(t)
		s.sshForward(t, "alice+fwd", "-L", byIP+":"+webIP+":80", "-L", byName+":"+webName+":80")
		if body := httpGetRetry(t, "http://127.0.0.1:"+byIP+"/index.html"); strings.TrimSpace(body) != "hello-from-web" {
			t.Errorf("GET through ssh -L to %s: %q", webIP, body)
		}
		// httpd writes an IPv4 peer as [::ffff:a.b.c.d].
		from := strings.Trim(strings.TrimSpace(httpGetRetry(t, "http://127.0.0.1:"+byName+"/cgi-bin/ip")), "[]")
		if a, err := netip.ParseAddr(from); err == nil {
			from = a.Unmap().String()
		}
		// The connection left from the user's pod, not from podgate.
		if pod := claimedPod(t, s, "fwd"); from != pod.Status.PodIP {
			t.Errorf("the web server saw a connection from %q, want the user's pod %s (%s)", from, pod.Name, pod.Status.PodIP)
		}
	})

	t.Run("ssh -D with curl --socks5-hostname", func(t *testing.T) {
		socks := freePort(t)
		stderr := s.sshForward(t, "alice+fwd", "-D", socks)
		proxy := []string{"--socks5-hostname", "127.0.0.1:" + socks}
		var body string
		eventually(t, 30*time.Second, "curl through ssh -D", func() bool {
			out, code := curl(t, append(proxy, "http://"+webName+"/index.html")...)
			body = out
			return code == 0
		})
		if body != "hello-from-web" {
			t.Errorf("GET %s through ssh -D: %q", webName, body)
		}
		// Refused: a name outside the rules (though the pod could reach
		// it), an address outside them, an allowed name leading to
		// loopback, and the web pod itself on a port the rules omit.
		for _, url := range []string{"http://" + secretName + "/", "http://" + secretIP + "/", "http://evil.rebind.test/", "http://" + web.Status.PodIP + ":8080/"} {
			if out, code := curl(t, append(proxy, url)...); code == 0 {
				t.Errorf("GET %s through ssh -D was let through: %q", url, out)
			}
		}
		eventually(t, 30*time.Second, "ssh reporting the refusals", func() bool {
			return strings.Count(stderr.String(), "administratively prohibited") >= 4
		})
		if !strings.Contains(stderr.String(), "podgate: forwarding to this destination is not allowed") {
			t.Errorf("ssh stderr lacks podgate's reason:\n%s", stderr.String())
		}
	})

	t.Run("metrics", func(t *testing.T) {
		text := s.scrape(t)
		for _, series := range []string{
			`podgate_forward_channels_total{profile="fwd",result="ok",target="relay"}`,
			`podgate_forward_channels_total{profile="fwd",result="denied",target="relay"}`,
		} {
			if !strings.Contains(text, series) {
				t.Errorf("metrics lack %s", series)
			}
		}
	})

	t.Run("NetworkPolicy applies to relayed connections", func(t *testing.T) {
		enforcingNetworkPolicy(t)
		// Deny every egress of the profile's pods: a destination the
		// rules allow is then out of reach, because the relay connects
		// from the pod.
		pol := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "fwd-no-egress"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"podgate.io/profile": "fwd"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			},
		}
		ctx := context.Background()
		if _, err := env.Client.NetworkingV1().NetworkPolicies(env.Namespace).Create(ctx, pol, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer env.Client.NetworkingV1().NetworkPolicies(env.Namespace).Delete(ctx, pol.Name, metav1.DeleteOptions{})
		local := freePort(t)
		stderr := s.sshForward(t, "alice+fwd", "-L", local+":"+webIP+":80")
		// kube-router applies a policy within a sync, and no event says
		// when: the forward is tried, bounded, until it is blocked.
		eventually(t, 2*time.Minute, "the policy blocking the relayed connection", func() bool {
			out, code := curl(t, "http://127.0.0.1:"+local+"/index.html")
			if code == 0 && out == "hello-from-web" {
				return false
			}
			return strings.Contains(stderr.String(), "connect failed")
		})
		for _, line := range strings.Split(stderr.String(), "\n") {
			if strings.Contains(line, "connect failed") {
				t.Logf("ssh: %s", line)
				break
			}
		}
	})

	t.Run("image without bash", func(t *testing.T) {
		busybox := corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: kubetest.BusyboxImage, ImagePullPolicy: corev1.PullNever}}}
		createProfile(t, s, "nobash", selectableNoMin(map[string]string{"podgate.io/port-forwarding": "true", "podgate.io/forward-allow": webIP + "/32:80"}), busybox, echoesAs(t, s, "alice+nobash"))
		local := freePort(t)
		stderr := s.sshForward(t, "alice+nobash", "-L", local+":"+webIP+":80")
		eventually(t, 30*time.Second, "ssh reporting the refused forward", func() bool {
			_, _ = curl(t, "http://127.0.0.1:"+local+"/")
			return strings.Contains(stderr.String(), "connect failed: podgate: this environment's image cannot relay connections")
		})
	})
}
