package localcluster

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// kwokDocs renders KWOK's configuration for a state directory and
// decodes every document of it.
func kwokDocs(t *testing.T) (Options, []*unstructured.Unstructured) {
	t.Helper()
	o := Options{StateDir: filepath.Join(t.TempDir(), "state")}
	b, err := o.kwokConfig()
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return o, docs
		}
		if err != nil {
			t.Fatalf("reading the rendered configuration: %v", err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatalf("decoding %q: %v", doc, err)
		}
		if len(u.Object) > 0 {
			docs = append(docs, u)
		}
	}
}

// TestKWOKConfigLeavesTheRealNodeAlone checks the rendered configuration:
// KWOK manages only nodes with the fake-node label (never the cluster's
// real node), every Stage KWOK needs is there, and execs run as nobody in
// KWOK's home, outside the root-only state directory.
func TestKWOKConfigLeavesTheRealNodeAlone(t *testing.T) {
	o, docs := kwokDocs(t)
	kinds := map[string][]*unstructured.Unstructured{}
	for _, d := range docs {
		kinds[d.GetKind()] = append(kinds[d.GetKind()], d)
	}
	if len(kinds["KwokConfiguration"]) != 1 || len(kinds["ClusterExec"]) != 1 {
		t.Fatalf("want one KwokConfiguration and one ClusterExec, got kinds %v", keys(kinds))
	}
	opts, _, _ := unstructured.NestedMap(kinds["KwokConfiguration"][0].Object, "options")
	if opts["manageAllNodes"] != false {
		t.Errorf("manageAllNodes = %v, want false", opts["manageAllNodes"])
	}
	sel, err := labels.Parse(opts["manageNodesWithLabelSelector"].(string))
	if err != nil {
		t.Fatalf("manageNodesWithLabelSelector: %v", err)
	}
	if !sel.Matches(labels.Set(fakeNode(0).Labels)) {
		t.Errorf("selector %q does not match fake node labels %v", sel, fakeNode(0).Labels)
	}
	if sel.Matches(labels.Set{"kubernetes.io/hostname": "podgate-node", "kubernetes.io/os": "linux"}) {
		t.Errorf("selector %q matches the real node", sel)
	}
	stages := map[string]bool{}
	for _, s := range kinds["Stage"] {
		stages[s.GetName()] = true
	}
	for _, want := range []string{"podgate-node-ready", "podgate-node-heartbeat", "podgate-pod-ready", "podgate-pod-delete"} {
		if !stages[want] {
			t.Errorf("no Stage %s (have %v)", want, stages)
		}
	}
	execs, _, _ := unstructured.NestedSlice(kinds["ClusterExec"][0].Object, "spec", "execs")
	if len(execs) != 1 {
		t.Fatalf("want one exec rule, got %d", len(execs))
	}
	local, _, _ := unstructured.NestedMap(execs[0].(map[string]any), "local")
	uid, _, _ := unstructured.NestedFieldNoCopy(local, "securityContext", "runAsUser")
	if uid != int64(kwokUID) && uid != float64(kwokUID) {
		t.Errorf("execs run as user %v, want %d (nobody)", uid, kwokUID)
	}
	if local["workDir"] != o.kwokHome() || filepath.Dir(o.kwokHome()) == o.StateDir {
		t.Errorf("execs run in %v, want %s, beside (not in) the state directory %s", local["workDir"], o.kwokHome(), o.StateDir)
	}
}

// TestFakeNodesTakeOnlyPodsThatAsk checks that a fake node's taint keeps
// out a pod without KWOKToleration and lets in one with it, and that the
// node names round-trip through fakeNodeIndex.
func TestFakeNodesTakeOnlyPodsThatAsk(t *testing.T) {
	nd := fakeNode(42)
	if len(nd.Spec.Taints) != 1 {
		t.Fatalf("fake node taints = %v, want one", nd.Spec.Taints)
	}
	taint := nd.Spec.Taints[0]
	if taint.Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("taint effect %s, want NoSchedule", taint.Effect)
	}
	tol := KWOKToleration()
	if !tol.ToleratesTaint(&taint) {
		t.Errorf("KWOKToleration %+v does not tolerate the fake node's taint %+v", tol, taint)
	}
	other := corev1.Toleration{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists}
	if other.ToleratesTaint(&taint) {
		t.Errorf("an unrelated toleration tolerates the fake node's taint")
	}
	if !labels.SelectorFromSet(labels.Set{KWOKNodeLabel: KWOKNodeLabelValue}).Matches(labels.Set(nd.Labels)) {
		t.Errorf("fake node labels %v lack %s", nd.Labels, KWOKNodeSelector)
	}
	// podgate's pods carry an ephemeral-storage limit (1 GiB by default):
	// a node without that resource fits none of them.
	disk := nd.Status.Allocatable[corev1.ResourceEphemeralStorage]
	if pods := nd.Status.Allocatable.Pods().Value(); disk.Value() < pods<<30 {
		t.Errorf("fake node allocates %s of ephemeral storage, less than 1 GiB for each of its %d pods", disk.String(), pods)
	}
	if i, ok := fakeNodeIndex(nd.Name); !ok || i != 42 {
		t.Errorf("fakeNodeIndex(%q) = %d, %v; want 42, true", nd.Name, i, ok)
	}
	if _, ok := fakeNodeIndex("podgate-node"); ok {
		t.Errorf("fakeNodeIndex accepts the real node's name")
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
