package localcluster_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/localcluster"
)

// TestKWOKExecIntoFakePod proves the KWOK component end to end on a
// cluster that has fake nodes (`make cluster-kwok KWOK_NODES=1`; make
// test's cluster has none, so it skips there): a pod that selects and
// tolerates the fake nodes is scheduled onto one and turned Ready by the
// harness's Stages, and an exec into it reaches KWOK's kubelet API over
// TLS and runs locally as nobody.
func TestKWOKExecIntoFakePod(t *testing.T) {
	env := kubetest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), kubetest.Timeout)
	defer cancel()
	nodes, err := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: localcluster.KWOKNodeSelector})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) == 0 {
		t.Skip("the cluster has no KWOK fake nodes (make cluster-kwok KWOK_NODES=1 adds one)")
	}
	pod := kubetest.IdlePod("on-fake-node", kubetest.DebianImage)
	pod.Spec.NodeSelector = map[string]string{localcluster.KWOKNodeLabel: localcluster.KWOKNodeLabelValue}
	pod.Spec.Tolerations = []corev1.Toleration{localcluster.KWOKToleration()}
	if _, err := env.Client.CoreV1().Pods(env.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	got, err := env.WaitPodReady(ctx, pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.Spec.NodeName, localcluster.KWOKNodePrefix) {
		t.Fatalf("pod landed on %q, not on a fake node", got.Spec.NodeName)
	}
	req := env.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(env.Namespace).
		Name(pod.Name).SubResource("exec").VersionedParams(&corev1.PodExecOptions{
		Container: "main", Command: []string{"/bin/sh", "-c", "id -u; echo fake"}, Stdout: true, Stderr: true,
	}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(env.Config, "POST", req.URL())
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut}); err != nil {
		t.Fatalf("exec into the fake pod: %v (stderr %q)", err, errOut.String())
	}
	if want := "65534\nfake\n"; out.String() != want {
		t.Errorf("exec output %q, want %q (a local process as nobody)", out.String(), want)
	}
}
