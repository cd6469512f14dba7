package deploy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podgate/podgate/internal/testenv/hosttools"
	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/localcluster"
	"github.com/podgate/podgate/kube"
	"github.com/podgate/podgate/pool"
)

// sshUser is the user whose key the test puts in the
// podgate-authorized-keys ConfigMap.
const sshUser = "tester"

// TestDeployIntoLocalCluster is issue #5's proof that deploy/ works as an
// operator would use it: every kustomization passes a server-side dry run,
// then the local overlay, with the image built by deploy/image/build.sh,
// runs podgate as two replicas inside the cluster, and OpenSSH logs in
// through the Service and lands in a guest pod. The login exercises the
// in-cluster configuration and the RBAC for real; `kubectl auth can-i` and
// impersonated requests then show what the ServiceAccount must not do.
//
// Everything is deployed into two namespaces of the test's own, renamed
// from podgate and podgate-guests by an overlay (renamedOverlay): the
// cluster may be shared with `make run`, which serves from podgate-guests.
func TestDeployIntoLocalCluster(t *testing.T) {
	cfg := kubetest.RESTConfig(t) // skips without a cluster
	k := findKubectl(t)
	hosttools.Require(t, "ssh", "ssh-keygen")
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	ns := newNamespaces()
	checkNamespacesFree(ctx, t, cs, ns)
	t.Logf("deploying into namespaces %s and %s", ns.podgate, ns.guests)
	imported := false // the test's image, once imported into containerd
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := deleteNamespaces(ctx, cs, ns.names()...); err != nil {
			t.Errorf("cleaning up: %v", err)
		}
		if imported {
			removeImage(ctx, t, imageRef(ns))
		}
	})

	dryRun(ctx, t, k, ns)

	local := filepath.Clean(kubetest.Kubeconfig()) == filepath.Clean(localcluster.DefaultKubeconfig)
	if !local {
		t.Skip("deploying needs the local cluster: deploy/image/build.sh imports the image into its containerd")
	}

	imported = true // build.sh may fail after importing
	checkImage(t, buildImage(t, imageRef(ns)))

	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	keyFile := overlayWithKey(t, imageRef(ns))
	overlay := renamedOverlay(t, filepath.Dir(keyFile), ns)
	checkOwnedOnly(t, "the deployed overlay", render(ctx, t, k, overlay), ns)
	if t.Failed() {
		t.FailNow()
	}
	start := time.Now()
	if _, _, err := k.run(ctx, nil, "apply", "-k", overlay); err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.run(ctx, nil, "-n", ns.podgate, "rollout", "status", "deployment/podgate", "--timeout=150s"); err != nil {
		logPodgate(t, k, ns)
		t.Fatal(err)
	}
	t.Logf("2 replicas rolled out in %v", time.Since(start).Round(time.Millisecond))

	// Log in through a port-forward to the Service, as an operator would
	// try it; through the NodePort the local overlay publishes, which goes
	// through kube-proxy and the Service's endpoints; and through each
	// replica, so that both prove their in-cluster config and serve the one
	// host key.
	replicas := replicaNames(ctx, t, cs, ns)
	type route struct{ host, port, replica string }
	routes := []route{
		{"127.0.0.1", portForward(ctx, t, k, ns, "service/podgate"), ""},
		{nodeAddress(ctx, t, cs), nodePort(ctx, t, cs, ns), ""},
	}
	for _, r := range replicas {
		routes = append(routes, route{"127.0.0.1", portForward(ctx, t, k, ns, "pod/"+r), r})
	}
	var hosts []string
	for _, r := range routes {
		hosts = append(hosts, "["+r.host+"]:"+r.port)
	}
	knownHosts := knownHostsFromSecret(ctx, t, cs, ns, hosts...)
	// kube-proxy programs the NodePort when the endpoints become ready,
	// shortly after the rollout; no API event says it is done.
	waitTCP(ctx, t, net.JoinHostPort(routes[1].host, routes[1].port))
	for _, r := range routes {
		owner := checkLogin(ctx, t, cs, k, ns, keyFile, knownHosts, r.host, r.port, replicas)
		if r.replica != "" && owner != r.replica {
			t.Errorf("logging in through replica %s, the pod was claimed by %q", r.replica, owner)
		}
	}
	checkRBAC(ctx, t, k, cfg, ns)
}

// buildImage runs deploy/image/build.sh, which builds podgate's image,
// imports it into the local cluster's containerd as ref (a tag of the
// test's own: localhost/podgate:local is what `make image` and `make
// deploy` use) and writes the archive it returns. It compiles podgate
// statically, which takes minutes with a cold Go cache on a loaded 2-core
// node, so it has a time budget of its own.
func buildImage(t *testing.T, ref string) string {
	t.Helper()
	hosttools.Require(t, "umoci", "skopeo", "ctr")
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	archive := filepath.Join(t.TempDir(), "podgate.tar")
	build := exec.CommandContext(ctx, repoDir(t, "image/build.sh"), archive)
	build.Env = append(os.Environ(), "TAG="+ref)
	// When the context kills build.sh, its go build may still hold the
	// output pipe: stop waiting for it soon after.
	build.WaitDelay = 10 * time.Second
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("deploy/image/build.sh: %v\n%s", err, out)
	}
	t.Logf("image %s built and imported in %v", ref, time.Since(start).Round(time.Millisecond))
	return archive
}

// dryRun validates every kustomization, moved into ns, against the API
// server. The namespaces are created for real first (from the rendered
// manifests), because a dry run of a namespaced object in a missing
// namespace fails. Custom resources whose CRDs the cluster lacks are left to
// TestDeployMonitoringOffline. Pod Security warnings fail the test: podgate
// runs under the restricted standard.
func dryRun(ctx context.Context, t *testing.T, k kubectl, ns namespaces) {
	t.Helper()
	base := render(ctx, t, k, renamedOverlay(t, repoDir(t, "base"), ns))
	var namespaces []doc
	for _, d := range base {
		if d.Kind == "Namespace" {
			namespaces = append(namespaces, d)
		}
	}
	if len(namespaces) != 2 {
		t.Fatalf("deploy/base has %d namespaces, want podgate and podgate-guests", len(namespaces))
	}
	checkOwnedOnly(t, "base", namespaces, ns)
	if t.Failed() {
		t.FailNow()
	}
	if _, _, err := k.run(ctx, join(namespaces), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"base", "overlays/local", "overlays/kind", "overlays/with-monitoring"} {
		var docs []doc
		custom := 0
		rendered := render(ctx, t, k, renamedOverlay(t, repoDir(t, dir), ns))
		checkOwnedOnly(t, dir, rendered, ns)
		if t.Failed() {
			t.FailNow()
		}
		for _, d := range rendered {
			if d.group() == "monitoring.coreos.com" {
				custom++
				continue
			}
			docs = append(docs, d)
		}
		if dir == "overlays/with-monitoring" && custom != 2 {
			t.Errorf("%s: %d monitoring.coreos.com objects, want a ServiceMonitor and a PrometheusRule", dir, custom)
		}
		out, stderr, err := k.run(ctx, join(docs), "apply", "--dry-run=server", "-f", "-")
		if err != nil {
			t.Fatalf("dry run of %s: %v", dir, err)
		}
		if strings.Contains(stderr, "PodSecurity") {
			t.Errorf("dry run of %s: Pod Security warnings:\n%s", dir, stderr)
		}
		t.Logf("dry run of %s: %d objects accepted (%d custom resources validated offline)", dir, strings.Count(out, "(server dry run)"), custom)
		if n := strings.Count(out, "(server dry run)"); n != len(docs) {
			t.Errorf("dry run of %s: %d objects reported, want %d:\n%s", dir, n, len(docs), out)
		}
	}
}

// overlayWithKey writes a kustomization that takes deploy/overlays/local
// with image instead of localhost/podgate:local and fills the
// podgate-authorized-keys ConfigMap with a fresh key of sshUser, the way an
// operator adds users. It returns the private key file; the kustomization
// is beside it, still in deploy/base's namespaces.
func overlayWithKey(t *testing.T, image string) string {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", sshUser, "-f", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	// kustomize accepts only relative paths to other kustomizations.
	rel, err := filepath.Rel(dir, repoDir(t, "overlays/local"))
	if err != nil {
		t.Fatal(err)
	}
	name, tag, _ := strings.Cut(image, ":")
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
images:
  - name: localhost/podgate
    newName: %s
    newTag: %s
configMapGenerator:
  - name: podgate-authorized-keys
    namespace: %s
    behavior: replace
    files:
      - %s=id_ed25519.pub
`, rel, name, tag, baseNS, sshUser)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	return keyFile
}

// nodeAddress is the node's InternalIP, where NodePorts are served.
func nodeAddress(ctx context.Context, t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				return a.Address
			}
		}
	}
	t.Fatal("no node has an InternalIP")
	return ""
}

// nodePort is the node port the cluster allocated to the podgate Service
// (the test's overlay drops deploy/'s fixed 30022, which is cluster-wide).
func nodePort(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns namespaces) string {
	t.Helper()
	svc, err := cs.CoreV1().Services(ns.podgate).Get(ctx, "podgate", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].NodePort == 0 {
		t.Fatalf("Service podgate has ports %+v, want one with a node port", svc.Spec.Ports)
	}
	return strconv.Itoa(int(svc.Spec.Ports[0].NodePort))
}

// knownHostsFromSecret writes a known_hosts file holding the public half of
// the host key in the podgate-hostkey Secret, which the first replica
// created through its in-cluster config. ssh then checks that the replica it
// reaches serves exactly that key.
func knownHostsFromSecret(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns namespaces, hosts ...string) string {
	t.Helper()
	secret, err := cs.CoreV1().Secrets(ns.podgate).Get(ctx, "podgate-hostkey", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the host-key Secret podgate should have created: %v", err)
	}
	signer, err := ssh.ParsePrivateKey(secret.Data[kube.HostKeyDataKey])
	if err != nil {
		t.Fatalf("parsing the host key in Secret podgate-hostkey: %v", err)
	}
	line := fmt.Sprintf("%s %s", strings.Join(hosts, ","), ssh.MarshalAuthorizedKey(signer.PublicKey()))
	file := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(file, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// checkLogin runs a command with OpenSSH through the port-forward and checks
// where it ran while the session is still open: a guest pod in the guest
// namespace, claimed by one of the podgate replicas for sshUser, with no
// ServiceAccount token and a non-root uid.
//
// It returns the replica that claimed the pod.
func checkLogin(ctx context.Context, t *testing.T, cs kubernetes.Interface, k kubectl, ns namespaces, keyFile, knownHosts, host, port string, replicas []string) string {
	t.Helper()
	const marker = "podgate-deploy-test-ready"
	remote := "hostname; cat /var/run/secrets/kubernetes.io/serviceaccount/token 2>&1 | head -c 20; echo; id -u; echo " + marker + "; cat >/dev/null"
	sshCtx, stop := context.WithTimeout(ctx, 2*time.Minute)
	defer stop()
	cmd := exec.CommandContext(sshCtx, "ssh", "-F", "/dev/null", "-p", port, "-i", keyFile,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+knownHosts,
		sshUser+"@"+host, remote)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan []string, 1)
	go func() {
		var got []string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			got = append(got, sc.Text())
			if sc.Text() == marker {
				break
			}
		}
		lines <- got
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var got []string
	select {
	case got = <-lines:
	case <-sshCtx.Done():
	}
	if len(got) != 4 || got[3] != marker {
		stop()
		_ = cmd.Wait()
		logPodgate(t, k, ns)
		t.Fatalf("ssh output = %q, want hostname, token line, uid, marker; stderr:\n%s", got, stderr.String())
	}
	hostname, token, uid := got[0], got[1], got[2]
	t.Logf("ssh to %s:%s ran in %s: token line %q, uid %s", host, port, hostname, token, uid)

	// The session is open: the pod must be claimed now.
	owner := ""
	pod, err := cs.CoreV1().Pods(ns.guests).Get(ctx, hostname, metav1.GetOptions{})
	if err != nil {
		t.Errorf("hostname %q is not a pod in %s: %v", hostname, ns.guests, err)
	} else {
		owner = checkGuestPod(t, pod, replicas)
	}
	if strings.HasPrefix(token, "eyJ") || !strings.HasPrefix(token, "cat:") {
		t.Errorf("the guest pod can read a ServiceAccount token (got %q)", token)
	}
	if uid == "0" || uid == "" {
		t.Errorf("the user's command ran as uid %q, want non-root", uid)
	}

	_ = stdin.Close() // ends `cat`, so the command exits 0
	if err := cmd.Wait(); err != nil {
		t.Errorf("ssh: %v; stderr:\n%s", err, stderr.String())
	}
	return owner
}

// replicaNames lists the podgate replica pods, of which there must be two.
func replicaNames(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns namespaces) []string {
	t.Helper()
	replicas, err := cs.CoreV1().Pods(ns.podgate).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=podgate"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range replicas.Items {
		if r.DeletionTimestamp == nil {
			names = append(names, r.Name)
		}
	}
	if len(names) != 2 {
		t.Fatalf("podgate replicas = %v, want 2", names)
	}
	return names
}

// checkGuestPod checks that pod is a guest pod claimed by one of the podgate
// replicas (names) for sshUser, with no ServiceAccount token mounted, and
// returns that replica.
func checkGuestPod(t *testing.T, pod *corev1.Pod, names []string) string {
	t.Helper()
	if got := pod.Labels[pool.LabelState]; got != pool.StateClaimed {
		t.Errorf("pod %s state label = %q, want %q", pod.Name, got, pool.StateClaimed)
	}
	if owner := pod.Labels[pool.LabelOwner]; !slices.Contains(names, owner) {
		t.Errorf("pod %s is owned by %q, not by a podgate replica %v", pod.Name, owner, names)
	}
	if user := pod.Annotations[pool.AnnUser]; user != sshUser {
		t.Errorf("pod %s is claimed for user %q, want %q", pod.Name, user, sshUser)
	}
	if a := pod.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Errorf("pod %s automountServiceAccountToken = %v, want false", pod.Name, a)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Projected != nil {
			t.Errorf("pod %s has a projected volume %q (a ServiceAccount token?)", pod.Name, v.Name)
		}
	}
	t.Logf("guest pod %s: claimed by replica %s for %s", pod.Name, pod.Labels[pool.LabelOwner], pod.Annotations[pool.AnnUser])
	return pod.Labels[pool.LabelOwner]
}

// logPodgate puts the replicas' last log lines into a failing test's output.
func logPodgate(t *testing.T, k kubectl, ns namespaces) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, _, err := k.run(ctx, nil, "-n", ns.podgate, "logs", "-l", "app.kubernetes.io/name=podgate", "--tail=30", "--prefix")
	t.Logf("podgate logs (err %v):\n%s", err, out)
	out, _, _ = k.run(ctx, nil, "get", "pods", "-n", ns.podgate, "-o", "wide")
	t.Logf("pods:\n%s", out)
	out, _, _ = k.run(ctx, nil, "get", "pods", "-n", ns.guests, "-o", "wide")
	t.Logf("pods:\n%s", out)
}
