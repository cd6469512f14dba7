package sshfront

import (
	"fmt"
	"github.com/podgate/podgate/scheduler"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the collectors sshfront owns. podgate_phase_duration_seconds is
// shared with the scheduler (which observes claim and exec_start); whichever
// component registers it first creates it and the other reuses it.
type metrics struct {
	phase          *prometheus.HistogramVec
	authAttempts   *prometheus.CounterVec
	refused        *prometheus.CounterVec
	connsActive    prometheus.Gauge
	sessionsActive prometheus.Gauge
}

// Refusal reasons for podgate_refused_total.
const (
	refusedMaxPreAuth     = "max_preauth"
	refusedMaxConnections = "max_connections"
	refusedMaxPerIP       = "max_connections_per_ip"
	refusedMaxPerUser     = "max_connections_per_user"
	refusedShuttingDown   = "shutting_down"
	refusedBadLogin       = "bad_login"
	refusedThrottled      = "throttled"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		authAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podgate_auth_attempts_total",
			Help: "SSH authentication attempts by method and result (success, failure, throttled).",
		}, []string{"method", "result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podgate_refused_total",
			Help: "Connections and sessions refused by the SSH front end, by reason.",
		}, []string{"reason"}),
		connsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podgate_connections_active",
			Help: "Authenticated SSH connections currently open.",
		}),
		sessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podgate_sessions_active",
			Help: "SSH session channels currently open.",
		}),
	}
	phase, err := scheduler.PhaseHistogram(reg)
	if err != nil {
		return nil, err
	}
	m.phase = phase
	for _, c := range []prometheus.Collector{m.authAttempts, m.refused, m.connsActive, m.sessionsActive} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering sshfront metrics: %w", err)
		}
	}
	return m, nil
}
