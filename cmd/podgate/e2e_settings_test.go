package main

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

// TestSessionContainer: in a profile of two containers, sessions run in the
// one podgate.io/container names, the other runs beside it as a sidecar
// (sharing the pod's network), every container gets the secure defaults,
// and a name the template lacks is refused with one line naming the
// annotation, without affecting other profiles.
func TestSessionContainer(t *testing.T) {
	env := kubetest.New(t)
	s := startPodgate(t, env, "PODGATE_PORT_FORWARDING=true")
	spec := corev1.PodSpec{Containers: []corev1.Container{
		// The sidecar comes first, so that only the annotation puts
		// sessions in the Debian container.
		{Name: "sidecar", Image: kubetest.BusyboxImage, ImagePullPolicy: corev1.PullNever,
			Command: []string{"/bin/sh", "-c", "mkdir -p /tmp/www && echo from-sidecar >/tmp/www/index.html && exec httpd -f -p 9000 -h /tmp/www"}},
		{Name: "shell", Image: kubetest.DebianImage, ImagePullPolicy: corev1.PullNever},
	}}
	createProfile(t, s, "multi", selectableNoMin(map[string]string{"podgate.io/container": "shell", "podgate.io/port-forwarding": "true"}), spec, echoesAs(t, s, "alice+multi"))

	// Debian's version file exists only in the shell container; BusyBox's
	// httpd, in the sidecar, answers on the pod's shared loopback.
	out, errOut, code := runCmd(t, s.ssh("alice+multi", "cat /etc/debian_version && bash -c 'exec 3<>/dev/tcp/127.0.0.1/9000 && printf \"GET /index.html HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3' | tail -n 1"), nil)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "12") || lines[1] != "from-sidecar" {
		t.Fatalf("session in profile multi: exit %d, stdout %q, stderr %q; want Debian 12's version and the sidecar's page", code, out, errOut)
	}
	pod := func() *corev1.Pod {
		pods, err := env.Client.CoreV1().Pods(env.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "podgate.io/profile=multi"})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("listing pods of profile multi: %v (%d pods)", err, len(pods.Items))
		}
		return &pods.Items[0]
	}()
	if got := pod.Annotations["kubectl.kubernetes.io/default-container"]; got != "shell" {
		t.Errorf("pod %s: default-container %q, want shell", pod.Name, got)
	}
	for _, c := range pod.Spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 {
			t.Errorf("container %s of pod %s is not hardened: %+v", c.Name, pod.Name, sc)
		}
		if (c.StartupProbe != nil) != (c.Name == "shell") {
			t.Errorf("container %s: startup probe %v; only the session container gets one", c.Name, c.StartupProbe)
		}
	}

	// A profile naming a container its template lacks is refused, and
	// the operator is told which annotation is wrong.
	no := false
	bad := &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "badctr", Labels: map[string]string{"podgate.io/profile": "badctr"},
			Annotations: map[string]string{"podgate.io/container": "shel", "podgate.io/user-selectable": "true"}},
		Template: corev1.PodTemplateSpec{Spec: *spec.DeepCopy()},
	}
	bad.Template.Spec.AutomountServiceAccountToken = &no
	if _, err := env.Client.CoreV1().PodTemplates(env.Namespace).Create(context.Background(), bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, kubetest.Timeout, "podgate logging the bad annotation", func() bool {
		return strings.Contains(s.stderr.String(), `annotation podgate.io/container: no container \"shel\" in the template (its containers: sidecar, shell)`)
	})
	if _, errOut, code := runCmd(t, s.ssh("alice+badctr", "true"), nil); code == 0 || !strings.Contains(errOut, "this environment is misconfigured") {
		t.Errorf("login to profile badctr: exit %d, %q; want a refusal", code, errOut)
	}
	if out, _, code := runCmd(t, s.ssh("alice+multi", "echo still-fine"), nil); code != 0 || strings.TrimSpace(out) != "still-fine" {
		t.Errorf("profile multi after badctr appeared: exit %d, %q", code, out)
	}
}

// TestImagePullSettings: the default profile's pull policy and pull secrets
// reach its pods, and a pull secret that does not exist makes the profile
// fail clearly (the kubelet alone would only warn, and would run the pod
// from the node's copy of the image) until it is created.
func TestImagePullSettings(t *testing.T) {
	env := kubetest.New(t)
	dir := t.TempDir()
	ps, err := podgatetest.Start(context.Background(), podgatetest.Options{
		Bin: podgateBin, Kubeconfig: kubetest.Kubeconfig(), Namespace: env.Namespace, Dir: dir,
		Env:      []string{"PODGATE_IMAGE_PULL_POLICY=Never", "PODGATE_IMAGE_PULL_SECRETS=regcred", "PODGATE_POOL_MIN=1"},
		WaitIdle: -1, Timeout: kubetest.Timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ps.Stop(30 * time.Second); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("podgate log:\n%s", ps.Log.String())
		}
	})
	ssh := func() (string, string, int) {
		return runCmd(t, ps.SSH("alice", "alice", "echo in-pod"), nil)
	}
	eventually(t, kubetest.Timeout, "podgate reporting the missing pull secret", func() bool {
		return strings.Contains(ps.Log.String(), `image pull secret \"regcred\" (PODGATE_IMAGE_PULL_SECRETS): no Secret of that name and type kubernetes.io/dockerconfigjson`)
	})
	if _, errOut, code := ssh(); code == 0 || !strings.Contains(errOut, "this environment is misconfigured") {
		t.Fatalf("login without the pull secret: exit %d, %q; want a refusal", code, errOut)
	}
	if pods, _ := env.Client.CoreV1().Pods(env.Namespace).List(context.Background(), metav1.ListOptions{}); len(pods.Items) != 0 {
		t.Errorf("%d pods were created for a profile whose pull secret is missing", len(pods.Items))
	}

	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "regcred"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)},
	}
	if _, err := env.Client.CoreV1().Secrets(env.Namespace).Create(context.Background(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, kubetest.Timeout, "a login once the secret exists", func() bool {
		out, _, code := ssh()
		return code == 0 && strings.TrimSpace(out) == "in-pod"
	})
	pods, err := env.Client.CoreV1().Pods(env.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "podgate.io/profile=default"})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("listing the default profile's pods: %v", err)
	}
	for _, p := range pods.Items {
		if len(p.Spec.ImagePullSecrets) != 1 || p.Spec.ImagePullSecrets[0].Name != "regcred" || p.Spec.Containers[0].ImagePullPolicy != corev1.PullNever {
			t.Errorf("pod %s: pull secrets %v, policy %s; want regcred and Never", p.Name, p.Spec.ImagePullSecrets, p.Spec.Containers[0].ImagePullPolicy)
		}
	}
}
