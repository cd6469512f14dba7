package pool

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the pool's Prometheus series; names are shared with the rest
// of podgate and must not change.
type metrics struct {
	pods         *prometheus.GaugeVec
	reservedPods *prometheus.GaugeVec
	share        *prometheus.GaugeVec
	held         *prometheus.GaugeVec
	target       *prometheus.GaugeVec
	// capacityRatio is demand against capacity (capacity.go).
	capacityRatio    *prometheus.GaugeVec
	degraded         *prometheus.GaugeVec
	claims           *prometheus.CounterVec
	reservedHandouts *prometheus.CounterVec
	recordFailures   *prometheus.CounterVec
	createFailures   *prometheus.CounterVec
	podStart         *prometheus.HistogramVec
	// reconnects counts what became of parked pods (park.go).
	reconnects *prometheus.CounterVec
	// syncPass is the time of one sync pass (see Pool.sync), by role: the
	// leader's pass also replenishes, shrinks and reaps.
	syncPass *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pods: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podgate_pool_pods",
			Help: "Managed pods by profile and state (idle: Ready and waiting for a user, reserved or not; warming; claimed; parked: kept for a user's reconnect), as this replica's cache sees them.",
		}, []string{"profile", "state"}),
		reservedPods: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podgate_pool_reserved_pods",
			Help: "Ready idle pods reserved for a live replica (of every replica), as this replica's cache sees them; the rest of podgate_pool_pods{state=\"idle\"} is unreserved.",
		}, []string{"profile"}),
		share: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podgate_pool_reserved_share",
			Help: "This replica's reserved share of the profile's idle target, as the leader published it.",
		}, []string{"profile"}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podgate_pool_reserved_held",
			Help: "Pods reserved for this replica's run that it holds, Ready or not.",
		}, []string{"profile"}),
		target: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podgate_pool_target",
			Help: "Idle pods the pool aims to keep per profile.",
		}, []string{"profile"}),
		capacityRatio: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podgate_pool_capacity_ratio",
			Help: "The profile's claim rate over the rate at which the cluster turns its new pods Ready under the current load, measured while pods were starting; above 1 the node cannot keep up and users queue. 0 while the capacity is not known yet.",
		}, []string{"profile"}),
		degraded: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podgate_profile_degraded",
			Help: "1 when the profile's pods cannot start or its template is invalid.",
		}, []string{"profile"}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podgate_claims_total",
			Help: "Claim attempts by result: hit, miss, conflict (lost a race), error, and handoff (a user waiting for a cold pod took a pod that turned Ready first).",
		}, []string{"profile", "result"}),
		reservedHandouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podgate_reserved_handouts_total",
			Help: "Warm logins served from this replica's reserved pods, with no API call before the user's command starts (a subset of podgate_claims_total{result=\"hit\"}).",
		}, []string{"profile"}),
		recordFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podgate_claim_record_failures_total",
			Help: "Reserved pods handed out whose claim record could not be written, by reason (gone, deleting, changed, error); each ended its session and deleted the pod.",
		}, []string{"profile", "reason"}),
		createFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podgate_pod_create_failures_total",
			Help: "Pods that could not start, by reason.",
		}, []string{"profile", "reason"}),
		podStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "podgate_pod_start_duration_seconds",
			Help:    "Time from creating a cold pod (for a waiting user) to it being Ready, whether that user or, after a handoff, the pool gets it.",
			Buckets: []float64{0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120},
		}, []string{"profile"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podgate_reconnects_total",
			Help: "What became of pods kept for a reconnect, counted once per pod by the replica that decided it: same_pod (a reconnect through this replica took it back), expired (the leader deleted it after its window), deleted (it stopped being Ready while parked, or vanished under a reconnect's claim), over_limit (not parked: its user held the per-user limit).",
		}, []string{"profile", "result"}),
		syncPass: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "podgate_pool_sync_duration_seconds",
			Help: "Time of one pool sync pass over every profile's pods, by role (leader: it also creates, deletes and reaps; follower: gauges only). It runs after pod events and every second.",
			// Microseconds for a few pods; a pass that scans thousands
			// of pods may take milliseconds.
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
		}, []string{"role"}),
	}
	for _, c := range []prometheus.Collector{m.pods, m.reservedPods, m.share, m.held, m.target, m.capacityRatio, m.degraded,
		m.claims, m.reservedHandouts, m.recordFailures, m.createFailures, m.podStart, m.reconnects, m.syncPass} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering pool metrics: %w", err)
		}
	}
	return m, nil
}

// registerGauges registers the gauges read from the reserved set when
// scraped.
func (m *metrics) registerGauges(reg prometheus.Registerer, rs *reservedSet) error {
	for _, kind := range []string{"terminal", "plain"} {
		err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "podgate_pool_prepared_pods",
			Help:        "Reserved pods of this replica whose exec stream is open and waiting, so that a login attaches with no new exec, by the stream's kind (terminal or plain).",
			ConstLabels: prometheus.Labels{"kind": kind},
		}, func() float64 {
			terminal, plain := rs.preparedKinds()
			if kind == "terminal" {
				return float64(terminal)
			}
			return float64(plain)
		}))
		if err != nil {
			return fmt.Errorf("registering pool metrics: %w", err)
		}
	}
	return nil
}

// observeView sets a profile's gauges from one sync pass.
func (m *metrics) observeView(profile string, v view, pl plan, held int) {
	m.pods.WithLabelValues(profile, "idle").Set(float64(v.readyIdle + v.readyReserved))
	m.pods.WithLabelValues(profile, "warming").Set(float64(v.warming))
	m.pods.WithLabelValues(profile, "claimed").Set(float64(v.claimed))
	m.pods.WithLabelValues(profile, "parked").Set(float64(v.parked))
	m.reservedPods.WithLabelValues(profile).Set(float64(v.readyReserved))
	m.held.WithLabelValues(profile).Set(float64(held))
	m.target.WithLabelValues(profile).Set(float64(pl.target))
	m.degraded.WithLabelValues(profile).Set(boolFloat(pl.degraded))
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
