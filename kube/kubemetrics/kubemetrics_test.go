package kubemetrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestInstallFeedsMetricsFromARealClient is the only test that calls Install,
// because client-go accepts one registration per process. It drives a real
// clientset against a fake API server and checks that every metric moves.
func TestInstallFeedsMetricsFromARealClient(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := Install(reg); err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/api/v1/namespaces/present" {
			_, _ = w.Write([]byte(`{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"present"}}`))
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`))
	}))
	defer srv.Close()

	// QPS makes client-go use a rate limiter, whose wait it reports.
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, QPS: 100, Burst: 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "present", metav1.GetOptions{}); err != nil {
		t.Fatalf("get present namespace: %v", err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "absent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get absent namespace: want NotFound, got %v", err)
	}

	if n := histogramCount(t, reg, "podgate_kube_request_duration_seconds", "GET"); n != 2 {
		t.Errorf("request duration count for GET = %d, want 2", n)
	}
	if n := histogramCount(t, reg, "podgate_kube_rate_limiter_duration_seconds", "GET"); n != 2 {
		t.Errorf("rate limiter duration count for GET = %d, want 2", n)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]float64{}
	for _, mf := range families {
		if mf.GetName() != "podgate_kube_requests_total" {
			continue
		}
		for _, metric := range mf.GetMetric() {
			codes[label(metric, "code")+" "+label(metric, "method")] = metric.GetCounter().GetValue()
		}
	}
	if codes["200 GET"] != 1 || codes["404 GET"] != 1 {
		t.Errorf("requests_total by code and method = %v, want one 200 GET and one 404 GET", codes)
	}
}

func TestRegisteringTwiceFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg); err == nil {
		t.Error("second New on one registry succeeded, want an already-registered error")
	}
}

// TestAdaptersDropURLAndHost checks the label mapping directly, without the
// process-global hooks.
func TestAdaptersDropURLAndHost(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	opts := m.RegisterOpts()
	u := url.URL{Scheme: "https", Host: "api:6443", Path: "/api/v1/namespaces/{namespace}/pods/{name}"}
	opts.RequestLatency.Observe(context.Background(), "PATCH", u, 10*time.Millisecond)
	opts.RateLimiterLatency.Observe(context.Background(), "PATCH", u, 0)
	opts.RequestResult.Increment(context.Background(), "<error>", "PATCH", "api:6443")
	var counter dto.Metric
	if err := m.requestResult.WithLabelValues("<error>", "PATCH").Write(&counter); err != nil {
		t.Fatal(err)
	}
	if got := counter.GetCounter().GetValue(); got != 1 {
		t.Errorf("requests_total{code=<error>,method=PATCH} = %v, want 1", got)
	}
	if n := histogramCount(t, reg, "podgate_kube_request_duration_seconds", "PATCH"); n != 1 {
		t.Errorf("request duration count = %d, want 1", n)
	}
}

// TestMetricsPassPromlint lints names, help and units of this package's
// metrics with Prometheus' own linter.
func TestMetricsPassPromlint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	opts := m.RegisterOpts() // observe once so every vector has a child to gather
	opts.RequestLatency.Observe(context.Background(), "GET", url.URL{}, time.Millisecond)
	opts.RateLimiterLatency.Observe(context.Background(), "GET", url.URL{}, 0)
	opts.RequestResult.Increment(context.Background(), "200", "GET", "")
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 3 {
		t.Fatalf("gathered %d families, want 3", len(families))
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func histogramCount(t *testing.T, g prometheus.Gatherer, name, verb string) uint64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "verb") == verb {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
