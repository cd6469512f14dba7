package scale

import (
	"time"

	"github.com/podgate/podgate/bench"
)

// Config says what one run measures.
type Config struct {
	// Sizes are the pool targets, smallest first; the burst and the
	// profiles are taken at the last.
	Sizes []int
	// Nodes is how many fake nodes the cluster was given (for the report).
	Nodes int
	// Replicas is how many podgate replicas serve.
	Replicas int
	// Logins is how many sequential warm logins are timed at each size.
	Logins int
	// Burst is how many logins start at once at the largest size (0: none).
	Burst int
	// Baseline is the quiet window that measures each size's background
	// API traffic (lease renewals), subtracted from the logins' share.
	Baseline time.Duration
	// ProfileFor is the length of the CPU profile taken of the leader at
	// the largest size.
	ProfileFor time.Duration
}

// DefaultConfig is issue 16's run: 20, 500 and 5,000 idle pods on 100
// fake nodes, 3 replicas, a burst of 500.
func DefaultConfig() Config {
	return Config{Sizes: []int{20, 500, 5000}, Nodes: 100, Replicas: 3, Logins: 40, Burst: 500,
		Baseline: 15 * time.Second, ProfileFor: 20 * time.Second}
}

// Requests is API requests by HTTP method.
type Requests map[string]float64

// Reads is GETs (gets, lists and watches); Writes is everything else.
func (r Requests) Reads() float64 { return r["GET"] }

// Writes is POST, PUT, PATCH and DELETE together.
func (r Requests) Writes() float64 {
	var s float64
	for m, v := range r {
		if m != "GET" {
			s += v
		}
	}
	return s
}

// ReplicaUse is one replica's footprint with the pool full.
type ReplicaUse struct {
	ID         string
	Leader     bool
	RSS        int64
	Goroutines float64
}

// Size is everything measured at one pool size.
type Size struct {
	Size int
	// Fill is the time from asking for the size to the pool holding it.
	Fill time.Duration
	// FillAPIServerCPU is the API server's CPU in cores during the fill.
	FillAPIServerCPU float64
	// Logins are the sequential warm logins.
	Logins []bench.Sample
	Login  bench.Summary
	// ClaimP50 and ClaimP99 are the claim phase (seconds), over replicas.
	ClaimP50, ClaimP99 float64
	// PerLogin is API requests per login, all replicas, background
	// subtracted (from client-go's metrics, so exec streams are not in it).
	PerLogin Requests
	// Background is API requests per second with no logins.
	Background Requests
	// SyncP50, SyncP99 and SyncMax are the leader's sync pass (seconds)
	// during the logins; SyncPasses counts them.
	SyncP50, SyncP99, SyncMax, SyncPasses float64
	// APIServerCPU is the API server's CPU in cores during the logins.
	APIServerCPU float64
	// APF is the API server's handling of podgate's flow, fill and logins.
	APF      APF
	Replicas []ReplicaUse
}

// MaxRSS is the largest replica's RSS.
func (s Size) MaxRSS() int64 {
	var m int64
	for _, r := range s.Replicas {
		m = max(m, r.RSS)
	}
	return m
}

// Burst is the burst of logins at the largest size.
type Burst struct {
	Size int
	// Refill says how the pool failed to refill within refillWait after
	// the burst; "" when it did. The per-login requests then miss the
	// rest of the refill.
	Refill  string
	Samples []bench.Sample
	Login   bench.Summary
	// Misses counts logins that had to wait for a pod.
	Misses             int
	ClaimP50, ClaimP99 float64
	PerLogin           Requests
	APIServerCPU       float64
	PodgateCPU         float64
	Wall               time.Duration
	APF                APF
}

// Results is one run of the scale benchmark.
type Results struct {
	Meta   bench.Meta
	Config Config
	Sizes  []Size
	Burst  *Burst
	// Profiles are the files of the leader's profiles at the largest size
	// with `go tool pprof -top` of each.
	Profiles []Profile
	// Failures lists what could not be measured, with the reason.
	Failures []string
	// Warnings are the replicas' WARN and ERROR messages, most frequent
	// first (saveWarnings).
	Warnings []Warning
}

// Profile is one saved pprof profile and its top functions.
type Profile struct {
	Kind, File, Top string
}
