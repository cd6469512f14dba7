package deploy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// serviceAccount is the deployed podgate's identity in ns.
func serviceAccount(ns namespaces) string {
	return "system:serviceaccount:" + ns.podgate + ":podgate"
}

// access is one `kubectl auth can-i` question and the answer the design
// requires.
type access struct {
	verb, resource, subresource string
	namespace                   string // "" means --all-namespaces
	allowed                     bool
}

// rbacMatrix is the least-privilege design of deploy/base/rbac.yaml,
// deployed into ns: rights in the guest namespace only, plus the one
// host-key Secret. A subresource must be asked with --subresource: kubectl
// reads "pods/exec" as the pod named exec.
func rbacMatrix(ns namespaces) []access {
	podgateNS, guestNS := ns.podgate, ns.guests
	return []access{
		// What podgate needs, in the guest namespace.
		{"create", "pods", "", guestNS, true},
		{"watch", "pods", "", guestNS, true},
		{"patch", "pods", "", guestNS, true},
		{"delete", "pods", "", guestNS, true},
		{"create", "pods", "exec", guestNS, true},
		{"get", "pods", "exec", guestNS, true},
		{"create", "pods", "portforward", guestNS, true},
		{"get", "pods", "portforward", guestNS, true},
		{"watch", "podtemplates", "", guestNS, true},
		{"update", "leases.coordination.k8s.io", "", guestNS, true},
		{"create", "events", "", guestNS, true},
		{"list", "events", "", guestNS, true},
		// Events on guest pods go through client-go's events.k8s.io
		// recorder, which creates them and patches a repeated one into a
		// series.
		{"create", "events.events.k8s.io", "", guestNS, true},
		{"patch", "events.events.k8s.io", "", guestNS, true},
		// Its host key: get by name; create cannot be limited by name (the
		// design's one exception, documented in rbac.yaml).
		{"get", "secrets/podgate-hostkey", "", podgateNS, true},
		{"create", "secrets", "", podgateNS, true},
		// Nothing more in the guest namespace.
		{"get", "pods", "log", guestNS, false},
		{"get", "secrets", "", guestNS, false},
		{"create", "podtemplates", "", guestNS, false},
		{"create", "rolebindings.rbac.authorization.k8s.io", "", guestNS, false},
		// Nothing in other namespaces.
		{"get", "pods", "", "default", false},
		{"list", "pods", "", "kube-system", false},
		{"create", "pods", "exec", "kube-system", false},
		{"list", "pods", "", podgateNS, false},
		{"update", "configmaps", "", podgateNS, false},
		{"get", "secrets/other", "", podgateNS, false},
		{"list", "secrets", "", podgateNS, false},
		{"get", "secrets", "", "kube-system", false},
		// Nothing cluster-wide.
		{"list", "secrets", "", "", false},
		{"list", "pods", "", "", false},
		{"list", "nodes", "", "", false},
		{"create", "clusterrolebindings.rbac.authorization.k8s.io", "", "", false},
	}
}

// checkRBAC asks the API server, as the deployed ServiceAccount, every
// question of rbacMatrix, then makes a few real requests impersonating it:
// the allowed ones succeed and the denied ones are Forbidden. The login in
// checkLogin already proved the guest-namespace rights by use.
func checkRBAC(ctx context.Context, t *testing.T, k kubectl, cfg *rest.Config, ns namespaces) {
	t.Helper()
	podgateNS, guestNS, podgateSA := ns.podgate, ns.guests, serviceAccount(ns)
	matrix := rbacMatrix(ns)
	for _, a := range matrix {
		args := []string{"auth", "can-i", a.verb, a.resource, "--as=" + podgateSA}
		if a.subresource != "" {
			args = append(args, "--subresource="+a.subresource)
		}
		if a.namespace == "" {
			args = append(args, "--all-namespaces")
		} else {
			args = append(args, "-n", a.namespace)
		}
		// can-i exits 1 for "no": the answer is on stdout.
		out, stderr, err := k.run(ctx, nil, args...)
		answer := strings.TrimSpace(out)
		if answer != "yes" && answer != "no" {
			t.Errorf("kubectl %s: answer %q, err %v, stderr %s", strings.Join(args, " "), answer, err, stderr)
			continue
		}
		if got := answer == "yes"; got != a.allowed {
			t.Errorf("%s may %s %s%s %s: %v, want %v", podgateSA, a.verb, a.resource, sub(a.subresource), where(a.namespace), got, a.allowed)
		}
	}

	as := rest.CopyConfig(cfg)
	as.Impersonate = rest.ImpersonationConfig{
		UserName: podgateSA,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + podgateNS, "system:authenticated"},
	}
	cs, err := kubernetes.NewForConfig(as)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods(guestNS).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("as %s, listing pods in %s: %v", podgateSA, guestNS, err)
	}
	if _, err := cs.CoreV1().Secrets(podgateNS).Get(ctx, "podgate-hostkey", metav1.GetOptions{}); err != nil {
		t.Errorf("as %s, reading the host-key Secret: %v", podgateSA, err)
	}
	denied := map[string]func() error{
		"list pods in kube-system": func() error {
			_, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
			return err
		},
		"list secrets in " + podgateNS: func() error {
			_, err := cs.CoreV1().Secrets(podgateNS).List(ctx, metav1.ListOptions{})
			return err
		},
		"list secrets cluster-wide": func() error {
			_, err := cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
			return err
		},
		"get the default ServiceAccount in " + guestNS: func() error {
			_, err := cs.CoreV1().ServiceAccounts(guestNS).Get(ctx, "default", metav1.GetOptions{})
			return err
		},
	}
	for what, do := range denied {
		if err := do(); !apierrors.IsForbidden(err) {
			t.Errorf("as %s, %s: err = %v, want Forbidden", podgateSA, what, err)
		}
	}
	t.Logf("RBAC: %d can-i answers and %d impersonated requests as designed", len(matrix), len(denied)+2)
}

func sub(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf(" (subresource %s)", s)
}

func where(ns string) string {
	if ns == "" {
		return "cluster-wide"
	}
	return "in " + ns
}
