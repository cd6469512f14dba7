package scheduler

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the scheduler's Prometheus series; names are shared with the
// rest of podgate and must not change.
type metrics struct {
	attach  *prometheus.HistogramVec
	phase   *prometheus.HistogramVec
	session *prometheus.HistogramVec
	// forwards counts direct-tcpip channels; see forward.go.
	forwards *prometheus.CounterVec
	// apiRequests counts, per login, the API requests made on its
	// critical path; see apitrace.go.
	apiRequests *prometheus.HistogramVec
}

// attachBuckets resolve the warm target (tens of milliseconds) and keep
// 0.25 s, the SLO threshold the recording rules read, as a boundary.
var attachBuckets = []float64{0.005, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 20, 30, 60, 120}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		attach: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "podgate_attach_duration_seconds",
			Help:    "From connection accepted to the user's first command running, by result (warm, cold, failed).",
			Buckets: attachBuckets,
		}, []string{"profile", "mode", "result"}),
		session: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "podgate_session_duration_seconds",
			Help:    "Duration of session channels' processes.",
			Buckets: []float64{1, 10, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600},
		}, []string{"profile", "mode"}),
	}
	m.apiRequests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "podgate_attach_api_requests",
		Help:    "Kubernetes API requests a login waited for, from connection accepted to the first output of its first command, by result (warm, cold).",
		Buckets: []float64{0, 1, 2, 3, 5, 10},
	}, []string{"profile", "result"})
	var err error
	if m.apiRequests, err = register(reg, m.apiRequests); err != nil {
		return nil, err
	}
	if m.attach, err = register(reg, m.attach); err != nil {
		return nil, err
	}
	if m.phase, err = PhaseHistogram(reg); err != nil {
		return nil, err
	}
	if m.session, err = register(reg, m.session); err != nil {
		return nil, err
	}
	if m.forwards, err = forwardCounter(reg); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the identical collector already
// registered under the same name.
func register(reg prometheus.Registerer, c *prometheus.HistogramVec) (*prometheus.HistogramVec, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*prometheus.HistogramVec); ok {
			return existing, nil
		}
	}
	return nil, fmt.Errorf("registering scheduler metrics: %w", err)
}
