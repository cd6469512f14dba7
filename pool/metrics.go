package pool

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the pool's Prometheus series; names are shared with the rest
// of podgate and must not change.
type metrics struct {
	pods           *prometheus.GaugeVec
	target         *prometheus.GaugeVec
	degraded       *prometheus.GaugeVec
	claims         *prometheus.CounterVec
	createFailures *prometheus.CounterVec
	podStart       *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pods: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podgate_pool_pods",
			Help: "Managed pods by profile and state (idle, warming, claimed), as this replica's cache sees them.",
		}, []string{"profile", "state"}),
		target: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podgate_pool_target",
			Help: "Idle pods the pool aims to keep per profile.",
		}, []string{"profile"}),
		degraded: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podgate_profile_degraded",
			Help: "1 when the profile's pods cannot start or its template is invalid.",
		}, []string{"profile"}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podgate_claims_total",
			Help: "Claim attempts by result: hit, miss, conflict (lost a race), error, and handoff (a user waiting for a cold pod took an idle one that turned Ready first).",
		}, []string{"profile", "result"}),
		createFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podgate_pod_create_failures_total",
			Help: "Pods that could not start, by reason.",
		}, []string{"profile", "reason"}),
		podStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "podgate_pod_start_duration_seconds",
			Help:    "Time from creating a cold pod (for a waiting user) to it being Ready, whether that user or, after a handoff, the pool gets it.",
			Buckets: []float64{0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120},
		}, []string{"profile"}),
	}
	for _, c := range []prometheus.Collector{m.pods, m.target, m.degraded, m.claims, m.createFailures, m.podStart} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering pool metrics: %w", err)
		}
	}
	return m, nil
}
