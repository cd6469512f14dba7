// Package kubetest connects integration and end-to-end tests to a real
// cluster: the project's local cluster (see package localcluster) or any
// cluster named by KUBECONFIG, such as a kind cluster. Each test gets a
// namespace of its own that is deleted when the test ends. Tests skip with a
// clear message when no cluster is configured, so a plain `go test ./...`
// stays green on a machine without one.
package kubetest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podgate/podgate/internal/testenv/localcluster"
)

// DefaultKubeconfig is where the local cluster harness writes its admin
// kubeconfig. It is used when KUBECONFIG is not set.
const DefaultKubeconfig = localcluster.DefaultKubeconfig

// Image names of the guest images the local cluster imports, defined there.
// A kind user loads the same names with `kind load image-archive`.
const (
	DebianImage  = localcluster.DebianImage
	BusyboxImage = localcluster.BusyboxImage
)

// Env is a test's handle on the cluster: a client, its REST config, and the
// namespace the test owns.
type Env struct {
	Config    *rest.Config
	Client    kubernetes.Interface
	Namespace string
}

// Kubeconfig returns the kubeconfig path tests should use, or "" when none is
// configured: KUBECONFIG if set, else the local cluster's if it exists.
// PODGATE_TEST_NO_CLUSTER=1 forces "" so that unit tests can be run alone.
func Kubeconfig() string {
	if os.Getenv("PODGATE_TEST_NO_CLUSTER") != "" {
		return ""
	}
	if p := os.Getenv("KUBECONFIG"); p != "" {
		return p
	}
	if _, err := os.Stat(DefaultKubeconfig); err == nil {
		return DefaultKubeconfig
	}
	return ""
}

// RESTConfig loads the test cluster's config, or skips the test when there is
// no cluster. QPS and burst are raised so tests measure the cluster, not the
// client's default rate limiter.
func RESTConfig(t testing.TB) *rest.Config {
	t.Helper()
	path := Kubeconfig()
	if path == "" {
		t.Skip("no cluster: run `make cluster-up` (or set KUBECONFIG to a kind cluster) to run this test")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("loading kubeconfig %s: %v", path, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	return cfg
}

// New connects to the cluster and creates a namespace for this test, deleted
// (with everything in it) when the test ends. It skips when no cluster is
// configured and fails when one is configured but unreachable.
func New(t testing.TB) *Env {
	t.Helper()
	cfg := RESTConfig(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("creating client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := namespaceName(t.Name())
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   name,
		Labels: map[string]string{"podgate.io/test": "true"},
	}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating test namespace %s: %v", name, err)
	}
	if err := waitServiceAccount(ctx, cs, name); err != nil {
		t.Fatalf("waiting for the default service account in %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		zero := int64(0)
		err := cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting test namespace %s: %v", name, err)
			return
		}
		// Terminating pods still hold their CPU and memory requests on the
		// one node; the next test must not find it full of them.
		ctx, cancel = context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if err := waitNoPods(ctx, cs, name); err != nil {
			t.Logf("pods of test namespace %s still terminating: %v", name, err)
		}
	})
	return &Env{Config: cfg, Client: cs, Namespace: name}
}

// waitNoPods waits, by watch, until namespace ns has no pods left.
func waitNoPods(ctx context.Context, cs kubernetes.Interface, ns string) error {
	pods := cs.CoreV1().Pods(ns)
	for {
		list, err := pods.List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(list.Items) == 0 {
			return nil
		}
		w, err := pods.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
		if err != nil {
			return err
		}
		left := len(list.Items)
		for ev := range w.ResultChan() {
			switch ev.Type {
			case watch.Added:
				left++
			case watch.Deleted:
				left--
			}
			if left == 0 || ev.Type == watch.Error {
				break
			}
		}
		w.Stop()
		if left == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%d pods left: %w", left, err)
		}
	}
}

// waitServiceAccount waits for the namespace's default ServiceAccount, which
// the API server requires before it admits pods. It uses a watch, not a poll.
func waitServiceAccount(ctx context.Context, cs kubernetes.Interface, ns string) error {
	if _, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
		return nil
	}
	w, err := cs.CoreV1().ServiceAccounts(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=default"})
	if err != nil {
		return err
	}
	defer w.Stop()
	if _, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("watch closed")
			}
			return nil
		}
	}
}

// namespaceName makes a DNS-1123 namespace name from a test name.
func namespaceName(test string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(test) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > 40 {
		s = s[:40]
	}
	return strings.Trim("t-"+s, "-") + "-" + rand.String(5)
}
