// Package kubemetrics exports client-go's own request metrics (API latency,
// client-side throttling, response codes) as Prometheus metrics, so that an
// operator can tell a slow API server from podgate throttling itself.
//
// client-go reports these through the process-global hooks of
// k8s.io/client-go/tools/metrics, which accept one registration per process:
// main calls Install once, and everything else uses the Metrics type.
package kubemetrics

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/metrics"
)

// Compile-time checks that the adapters satisfy client-go's hooks.
var (
	_ metrics.LatencyMetric = latencyAdapter{}
	_ metrics.ResultMetric  = resultAdapter{}
)

// Metrics holds the collectors fed by client-go. Their labels are low
// cardinality on purpose: the verb and the response code, never the URL or
// the host, which would grow with namespaces and pod names.
type Metrics struct {
	requestLatency     *prometheus.HistogramVec
	rateLimiterLatency *prometheus.HistogramVec
	requestResult      *prometheus.CounterVec
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requestLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "podgate_kube_request_duration_seconds",
			Help: "Latency of Kubernetes API requests made by podgate, from send to response, by HTTP verb.",
			// API calls here take ~10 ms (a label PATCH) to seconds (a
			// watch list under load).
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"verb"}),
		rateLimiterLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "podgate_kube_rate_limiter_duration_seconds",
			Help: "Time Kubernetes API requests waited in podgate's client-side rate limiter (PODGATE_KUBE_QPS, PODGATE_KUBE_BURST), by HTTP verb.",
			// Mostly zero; anything above a few milliseconds means the
			// client is throttling itself.
			Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"verb"}),
		requestResult: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podgate_kube_requests_total",
			Help: "Kubernetes API requests made by podgate, by HTTP status code (or <error>) and method.",
		}, []string{"code", "method"}),
	}
	for _, c := range []prometheus.Collector{m.requestLatency, m.rateLimiterLatency, m.requestResult} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering kube client metrics: %w", err)
		}
	}
	return m, nil
}

// RegisterOpts returns the hooks to hand to client-go's metrics.Register.
func (m *Metrics) RegisterOpts() metrics.RegisterOpts {
	return metrics.RegisterOpts{
		RequestLatency:     latencyAdapter{m.requestLatency},
		RateLimiterLatency: latencyAdapter{m.rateLimiterLatency},
		RequestResult:      resultAdapter{m.requestResult},
	}
}

// Install creates the metrics on reg and makes client-go report to them.
// client-go's registration is process-global and only the first call in a
// process takes effect, so call Install once, from main, before creating any
// client; later calls register collectors that client-go never feeds.
func Install(reg prometheus.Registerer) error {
	m, err := New(reg)
	if err != nil {
		return err
	}
	metrics.Register(m.RegisterOpts())
	return nil
}

// latencyAdapter feeds a histogram from a client-go latency hook.
type latencyAdapter struct {
	h *prometheus.HistogramVec
}

func (a latencyAdapter) Observe(_ context.Context, verb string, _ url.URL, latency time.Duration) {
	a.h.WithLabelValues(verb).Observe(latency.Seconds())
}

// resultAdapter feeds a counter from client-go's result hook; the host is
// dropped because podgate talks to one API server.
type resultAdapter struct {
	c *prometheus.CounterVec
}

func (a resultAdapter) Increment(_ context.Context, code, method, _ string) {
	a.c.WithLabelValues(code, method).Inc()
}
