package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/podgate/podgate/internal/testenv/localcluster"
)

// The Prometheus Operator's ServiceMonitor and PrometheusRule are custom
// resources whose CRDs the test cluster does not have, so the API server
// cannot validate them. They are validated offline instead, by a strict
// decode into the subset of the operator's monitoring.coreos.com/v1 types
// that podgate uses. The operator's own Go module was not used: it requires
// k8s.io/* v0.37 and controller-runtime, which would move podgate's whole
// Kubernetes client off the 1.33 line the cluster is pinned to. A field the
// manifests use that is missing here makes the decode fail, which is the
// point: add it, with the operator's spelling, when a manifest needs it.

// serviceMonitor is monitoring.coreos.com/v1 ServiceMonitor, the fields
// podgate uses.
type serviceMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// prometheusRule is monitoring.coreos.com/v1 PrometheusRule.
type prometheusRule struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       ruleFile          `json:"spec"`
}

// ruleFile is both a Prometheus rule file and a PrometheusRule's spec.
type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Record        string            `json:"record,omitempty"`
	Alert         string            `json:"alert,omitempty"`
	Expr          string            `json:"expr"`
	For           string            `json:"for,omitempty"`
	KeepFiringFor string            `json:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// durationRE is the pattern the operator's CRDs put on every duration field.
var durationRE = regexp.MustCompile(`^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`)

// strictDecode decodes YAML into v, failing on fields v does not have.
func strictDecode(raw []byte, v any) error {
	js, err := utilyaml.ToJSON(raw)
	if err != nil {
		return fmt.Errorf("converting to JSON: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("strict decode: %w", err)
	}
	return nil
}

// TestDeployMonitoringOffline renders the with-monitoring overlay and checks
// the Prometheus Operator objects without a cluster: strict types, a
// ServiceMonitor that really selects the metrics Service and names its port,
// and a PrometheusRule whose groups are exactly deploy/prometheus/rules (the
// file promtool unit-tests) and pass `promtool check rules`.
func TestDeployMonitoringOffline(t *testing.T) {
	k := findKubectl(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	docs := render(ctx, t, k, repoDir(t, "overlays/with-monitoring"))

	var sm serviceMonitor
	if err := strictDecode(find(t, docs, "ServiceMonitor", "podgate").raw, &sm); err != nil {
		t.Fatalf("ServiceMonitor: %v", err)
	}
	if sm.APIVersion != "monitoring.coreos.com/v1" {
		t.Errorf("ServiceMonitor apiVersion = %q, want monitoring.coreos.com/v1", sm.APIVersion)
	}
	svcDoc := find(t, docs, "Service", "podgate-metrics")
	var svc corev1.Service
	if err := strictDecode(svcDoc.raw, &svc); err != nil {
		t.Fatalf("Service podgate-metrics: %v", err)
	}
	if svc.Namespace != sm.Metadata.Namespace && sm.Spec.NamespaceSelector == nil {
		t.Errorf("ServiceMonitor in %q selects Services in its own namespace, but podgate-metrics is in %q", sm.Metadata.Namespace, svc.Namespace)
	}
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		t.Fatalf("ServiceMonitor selector: %v", err)
	}
	if !sel.Matches(labels.Set(svc.Labels)) {
		t.Errorf("ServiceMonitor selector %s does not select Service podgate-metrics (labels %v)", sel, svc.Labels)
	}
	if user := find(t, docs, "Service", "podgate"); sel.Matches(labels.Set(user.Metadata.Labels)) {
		t.Errorf("ServiceMonitor selector %s also selects the user-facing SSH Service", sel)
	}
	if len(sm.Spec.Endpoints) == 0 {
		t.Fatal("ServiceMonitor has no endpoints")
	}
	for _, ep := range sm.Spec.Endpoints {
		named := false
		for _, p := range svc.Spec.Ports {
			named = named || p.Name == ep.Port
		}
		if !named {
			t.Errorf("ServiceMonitor endpoint port %q is not a port name of Service podgate-metrics", ep.Port)
		}
		for _, d := range []string{ep.Interval, ep.ScrapeTimeout} {
			if d != "" && !durationRE.MatchString(d) {
				t.Errorf("ServiceMonitor endpoint duration %q is not a Prometheus duration", d)
			}
		}
	}

	var pr prometheusRule
	if err := strictDecode(find(t, docs, "PrometheusRule", "podgate").raw, &pr); err != nil {
		t.Fatalf("PrometheusRule: %v", err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" {
		t.Errorf("PrometheusRule apiVersion = %q, want monitoring.coreos.com/v1", pr.APIVersion)
	}
	checkGroups(t, pr.Spec.Groups)

	src, err := os.ReadFile(repoDir(t, "prometheus/rules/podgate.rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules ruleFile
	if err := strictDecode(src, &rules); err != nil {
		t.Fatalf("podgate.rules.yaml: %v", err)
	}
	if !reflect.DeepEqual(rules.Groups, pr.Spec.Groups) {
		t.Error("PrometheusRule groups differ from deploy/prometheus/rules/podgate.rules.yaml: run deploy/prometheus/gen-prometheusrule.sh")
	}

	promtool := findPromtool(t)
	if promtool == "" {
		t.Log("promtool is not built yet (make rules-test builds it): skipped `promtool check rules` on the PrometheusRule's groups")
		return
	}
	js, err := json.Marshal(pr.Spec) // JSON is YAML, which promtool reads.
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "prometheusrule-groups.yaml")
	if err := os.WriteFile(file, js, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, promtool, "check", "rules", file).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules on the PrometheusRule's groups: %v\n%s", err, out)
	}
	t.Logf("promtool check rules: %s", strings.TrimSpace(string(out)))
}

// checkGroups checks what the CRD's schema would: unique group names, each
// rule either a recording or an alerting rule, with an expression and
// well-formed durations and names.
func checkGroups(t *testing.T, groups []ruleGroup) {
	t.Helper()
	if len(groups) == 0 {
		t.Fatal("PrometheusRule has no groups")
	}
	seen := map[string]bool{}
	alerts := 0
	for _, g := range groups {
		if g.Name == "" || seen[g.Name] {
			t.Errorf("group name %q is empty or repeated", g.Name)
		}
		seen[g.Name] = true
		if len(g.Rules) == 0 {
			t.Errorf("group %q has no rules", g.Name)
		}
		for _, r := range g.Rules {
			if (r.Record == "") == (r.Alert == "") {
				t.Errorf("group %q: a rule must have exactly one of record and alert (record %q, alert %q)", g.Name, r.Record, r.Alert)
			}
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("group %q rule %s%s has no expr", g.Name, r.Record, r.Alert)
			}
			if r.Record != "" && (r.For != "" || len(r.Annotations) > 0) {
				t.Errorf("recording rule %q has for or annotations, which only alerts take", r.Record)
			}
			for _, d := range []string{g.Interval, r.For, r.KeepFiringFor} {
				if d != "" && !durationRE.MatchString(d) {
					t.Errorf("group %q: %q is not a Prometheus duration", g.Name, d)
				}
			}
			if r.Alert != "" {
				alerts++
				if r.Labels["severity"] == "" {
					t.Errorf("alert %q has no severity label", r.Alert)
				}
			}
		}
	}
	if alerts == 0 {
		t.Error("PrometheusRule has no alerts")
	}
}

// findPromtool returns $PROMTOOL or the promtool that deploy/prometheus/test.sh
// caches, or "" when neither exists.
func findPromtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	mod, err := os.ReadFile(repoDir(t, "prometheus/tools/go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`github\.com/prometheus/prometheus (v\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("deploy/prometheus/tools/go.mod does not require github.com/prometheus/prometheus")
	}
	p := filepath.Join(localcluster.DefaultCacheDir(), "bin", "promtool-"+string(m[1]), "promtool")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// TestDeployMonitoringStrictDecode shows the offline validation can fail: a
// misspelt field and a bad duration are caught.
func TestDeployMonitoringStrictDecode(t *testing.T) {
	typo := []byte("apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec:\n  selector: {}\n  endpoint:\n    - port: metrics\n")
	var sm serviceMonitor
	if err := strictDecode(typo, &sm); err == nil || !strings.Contains(err.Error(), "endpoint") {
		t.Errorf("strict decode of a misspelt field: err = %v, want an unknown field error", err)
	}
	for d, ok := range map[string]bool{"30s": true, "1h30m": true, "0": true, "5 m": false, "1.5h": false, "30": false} {
		if durationRE.MatchString(d) != ok {
			t.Errorf("duration %q: valid = %v, want %v", d, !ok, ok)
		}
	}
}
