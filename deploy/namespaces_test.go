package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/podgate/podgate/internal/testenv/localcluster"
)

// The namespaces deploy/base creates. `make run` serves from
// podgate-guests, so the tests never touch these: they deploy into
// namespaces of their own through renamedOverlay.
const (
	baseNS      = "podgate"
	baseGuestNS = "podgate-guests"
)

// namespaces are one test run's stand-ins for podgate and podgate-guests.
type namespaces struct {
	podgate, guests string
}

// newNamespaces picks fresh names, so that the test never meets an object
// it did not create, and two runs on one cluster do not meet each other.
func newNamespaces() namespaces {
	base := "podgate-deploy-test-" + rand.String(5)
	return namespaces{podgate: base, guests: base + "-guests"}
}

func (ns namespaces) names() []string { return []string{ns.podgate, ns.guests} }

// imageRef is the tag under which the test imports its podgate image.
func imageRef(ns namespaces) string { return "localhost/podgate:" + ns.podgate }

// removeImage removes the test's image from the local cluster's containerd
// (whose image GC never removes imported images).
func removeImage(ctx context.Context, t *testing.T, ref string) {
	t.Helper()
	sock := localcluster.Options{StateDir: localcluster.DefaultStateDir}.ContainerdSocket()
	out, err := exec.CommandContext(ctx, "ctr", "--address", sock, "-n", "k8s.io", "images", "rm", ref).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "not found") { // build.sh failed before importing it
		t.Errorf("removing the test's image %s: %v: %s", ref, err, out)
	}
}

// renamedOverlay writes a kustomization that takes the kustomization at src
// as it is and moves it into ns: every object of podgate and podgate-guests,
// the Namespaces themselves (labelled podgate.io/test, as kubetest labels
// its namespaces), the RoleBindings' subjects and PODGATE_NAMESPACE. The
// Service loses its fixed nodePort, which is cluster-wide, so that the
// cluster allocates a free one. It returns the kustomization's directory.
func renamedOverlay(t *testing.T, src string, ns namespaces) string {
	t.Helper()
	dir := t.TempDir()
	// kustomize accepts only relative paths to other kustomizations.
	rel, err := filepath.Rel(dir, src)
	if err != nil {
		t.Fatal(err)
	}
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %[1]s
patches:
  - target: {namespace: %[2]s}
    patch: '[{"op": "replace", "path": "/metadata/namespace", "value": "%[4]s"}]'
  - target: {namespace: %[3]s}
    patch: '[{"op": "replace", "path": "/metadata/namespace", "value": "%[5]s"}]'
  - target: {kind: Namespace, name: %[2]s}
    patch: '[{"op": "replace", "path": "/metadata/name", "value": "%[4]s"}, {"op": "add", "path": "/metadata/labels/podgate.io~1test", "value": "true"}]'
  - target: {kind: Namespace, name: %[3]s}
    patch: '[{"op": "replace", "path": "/metadata/name", "value": "%[5]s"}, {"op": "add", "path": "/metadata/labels/podgate.io~1test", "value": "true"}]'
  - target: {kind: RoleBinding}
    patch: '[{"op": "replace", "path": "/subjects/0/namespace", "value": "%[4]s"}]'
  - target: {kind: ConfigMap, name: podgate-config}
    patch: '[{"op": "replace", "path": "/data/PODGATE_NAMESPACE", "value": "%[5]s"}]'
  - target: {kind: Service, name: podgate}
    patch: |-
      apiVersion: v1
      kind: Service
      metadata:
        name: podgate
      spec:
        ports:
          - port: 22
            nodePort: null
`, rel, baseNS, baseGuestNS, ns.podgate, ns.guests)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkOwnedOnly fails the test unless every rendered object lies in ns;
// see outsideNamespaces.
func checkOwnedOnly(t *testing.T, what string, docs []doc, ns namespaces) {
	t.Helper()
	problems, err := outsideNamespaces(docs, ns)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", what, p)
	}
}

// outsideNamespaces lists what in docs reaches outside ns: a cluster-scoped
// object other than ns's Namespaces, a namespace field (metadata, RoleBinding
// subjects) or *_NAMESPACE setting naming another namespace, and any
// mention of podgate-guests. A new reference to the shared namespaces in
// deploy/ then fails the test instead of reaching into `make run`'s.
func outsideNamespaces(docs []doc, ns namespaces) ([]string, error) {
	var problems []string
	for _, d := range docs {
		id := d.Kind + " " + d.Metadata.Name
		switch {
		case d.Kind == "Namespace" && !slices.Contains(ns.names(), d.Metadata.Name):
			problems = append(problems, fmt.Sprintf("%s is not one of the test's namespaces %v", id, ns.names()))
		case d.Kind != "Namespace" && !slices.Contains(ns.names(), d.Metadata.Namespace):
			problems = append(problems, fmt.Sprintf("%s is in namespace %q, not one of the test's %v (cluster-scoped objects are shared)", id, d.Metadata.Namespace, ns.names()))
		}
		js, err := utilyaml.ToJSON(d.raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		var v any
		if err := json.Unmarshal(js, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		walkStrings(v, "", func(key, s string) {
			namespaceKey := key == "namespace" || strings.HasSuffix(key, "_NAMESPACE")
			if s == baseGuestNS || (namespaceKey && !slices.Contains(ns.names(), s)) {
				problems = append(problems, fmt.Sprintf("%s refers to namespace %q (at %q), not one of the test's %v", id, s, key, ns.names()))
			}
		})
	}
	return problems, nil
}

// TestDeployOverlaysMoveIntoTestNamespaces renders every kustomization
// through renamedOverlay, offline, and checks that nothing is left in the
// shared namespaces; and that the check sees deploy/base's own namespaces,
// so that it can fail.
func TestDeployOverlaysMoveIntoTestNamespaces(t *testing.T) {
	k := findKubectl(t)
	ctx := t.Context()
	ns := newNamespaces()
	for _, dir := range []string{"base", "overlays/local", "overlays/kind", "overlays/with-monitoring"} {
		docs := render(ctx, t, k, renamedOverlay(t, repoDir(t, dir), ns))
		checkOwnedOnly(t, dir, docs, ns)
		var nodePorts int
		for _, d := range docs {
			if d.Kind == "Service" && strings.Contains(string(d.raw), "nodePort:") {
				nodePorts++
			}
		}
		if nodePorts != 0 {
			t.Errorf("%s: %d Services keep a fixed nodePort", dir, nodePorts)
		}
	}
	problems, err := outsideNamespaces(render(ctx, t, k, repoDir(t, "overlays/local")), ns)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(problems, "\n")
	for _, want := range []string{`Namespace podgate is not one`, `Namespace podgate-guests is not one`,
		`RoleBinding podgate refers to namespace "podgate" (at "namespace")`, `ConfigMap podgate-config refers to namespace "podgate-guests" (at "PODGATE_NAMESPACE")`} {
		if !strings.Contains(joined, want) {
			t.Errorf("deploy/overlays/local as it is: the check does not report %q; it reports:\n%s", want, joined)
		}
	}
}

// walkStrings calls f with every string in v and the map key above it.
func walkStrings(v any, key string, f func(key, s string)) {
	switch v := v.(type) {
	case string:
		f(key, v)
	case map[string]any:
		for k, e := range v {
			walkStrings(e, k, f)
		}
	case []any:
		for _, e := range v {
			walkStrings(e, key, f)
		}
	}
}

// checkNamespacesFree fails the test if one of ns exists already: the test
// deletes them at the end, and must delete only what it created.
func checkNamespacesFree(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns namespaces) {
	t.Helper()
	for _, name := range ns.names() {
		if _, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("namespace %s: want none before the test creates it, got err %v", name, err)
		}
	}
}

// deleteNamespaces deletes the namespaces and waits until they are gone.
// Their pods are deleted at once (grace 0): podgate's drain and the guests'
// idle command would otherwise hold namespace deletion for tens of seconds.
func deleteNamespaces(ctx context.Context, cs kubernetes.Interface, names ...string) error {
	zero := int64(0)
	for _, ns := range names {
		err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting namespace %s: %w", ns, err)
		}
	}
	for _, ns := range names {
		err := cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting pods in %s: %w", ns, err)
		}
	}
	for _, ns := range names {
		if err := waitNamespaceGone(ctx, cs, ns); err != nil {
			return err
		}
	}
	return nil
}

// waitNamespaceGone waits for the namespace's deletion through a watch
// opened before the existence check, so the deletion cannot slip between.
func waitNamespaceGone(ctx context.Context, cs kubernetes.Interface, ns string) error {
	for {
		w, err := cs.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + ns})
		if err != nil {
			return fmt.Errorf("watching namespace %s: %w", ns, err)
		}
		if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			w.Stop()
			return nil
		}
		deleted := false
		for ev := range w.ResultChan() {
			if ev.Type == watch.Deleted {
				deleted = true
				break
			}
		}
		w.Stop()
		if deleted {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for namespace %s to go: %w", ns, ctx.Err())
		}
		// The server closed the watch (timeout): open another.
	}
}
