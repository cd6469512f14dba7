package scheduler

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// PhaseHistogram returns podgate_phase_duration_seconds registered on reg.
// Two components observe it — sshfront (handshake, auth) and the scheduler
// (claim, exec_start) — so it is defined once, here, and whichever
// registers second gets the live instance back.
func PhaseHistogram(reg prometheus.Registerer) (*prometheus.HistogramVec, error) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "podgate_phase_duration_seconds",
		Help: "Duration of each phase between connection accept and the user's command running (handshake, auth, claim, exec_start).",
		// Phases take milliseconds; the buckets resolve them.
		Buckets: []float64{.001, .0025, .005, .01, .015, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"phase"})
	err := reg.Register(h)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*prometheus.HistogramVec); ok {
			return existing, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("registering podgate_phase_duration_seconds: %w", err)
	}
	return h, nil
}
