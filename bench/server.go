package bench

import (
	"math"
	"slices"

	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

// Phase is one server-side phase over a run, from the difference of two
// scrapes of podgate_phase_duration_seconds.
type Phase struct {
	Name  string
	Count float64
	// Mean is exact (sum over count); P50 and P99 are estimated from the
	// histogram buckets by linear interpolation, as Prometheus does.
	Mean, P50, P99 float64 // seconds
}

// phaseNames are podgate's phases in the order a connection goes through.
var phaseNames = []string{"handshake", "auth", "claim", "exec_start"}

// phases splits a run's server time by phase.
func phases(before, after podgatetest.Metrics) []Phase {
	var out []Phase
	for _, name := range phaseNames {
		h := histDelta(before, after, "podgate_phase_duration_seconds", "phase", name)
		if h.count == 0 {
			continue
		}
		out = append(out, Phase{Name: name, Count: h.count, Mean: h.sum / h.count, P50: h.quantile(0.5), P99: h.quantile(0.99)})
	}
	return out
}

// hist is a histogram's cumulative buckets, summed over matching series.
type hist struct {
	bounds     []float64
	cumulative []float64
	count, sum float64
}

func histOf(m podgatetest.Metrics, name string, kv ...string) hist {
	var h hist
	idx := map[float64]int{}
	for _, met := range m.Find(name, kv...) {
		hh := met.GetHistogram()
		if hh == nil {
			continue
		}
		h.count += float64(hh.GetSampleCount())
		h.sum += hh.GetSampleSum()
		for _, b := range hh.GetBucket() {
			i, ok := idx[b.GetUpperBound()]
			if !ok {
				i = len(h.bounds)
				idx[b.GetUpperBound()] = i
				h.bounds = append(h.bounds, b.GetUpperBound())
				h.cumulative = append(h.cumulative, 0)
			}
			h.cumulative[i] += float64(b.GetCumulativeCount())
		}
	}
	return h
}

// histDelta is after minus before for one histogram.
func histDelta(before, after podgatetest.Metrics, name string, kv ...string) hist {
	a, b := histOf(after, name, kv...), histOf(before, name, kv...)
	d := hist{count: a.count - b.count, sum: a.sum - b.sum}
	for i, ub := range a.bounds {
		c := a.cumulative[i]
		if j := slices.Index(b.bounds, ub); j >= 0 {
			c -= b.cumulative[j]
		}
		d.bounds = append(d.bounds, ub)
		d.cumulative = append(d.cumulative, c)
	}
	return d
}

// above counts observations greater than bound (which must be a bucket
// boundary).
func (h hist) above(bound float64) float64 {
	if i := slices.Index(h.bounds, bound); i >= 0 {
		return h.count - h.cumulative[i]
	}
	return math.NaN()
}

// quantile estimates quantile q by linear interpolation inside the bucket
// that holds it.
func (h hist) quantile(q float64) float64 {
	if h.count == 0 {
		return math.NaN()
	}
	rank := q * h.count
	lo, prev := 0.0, 0.0
	for i, ub := range h.bounds {
		c := h.cumulative[i]
		if c >= rank {
			if math.IsInf(ub, 1) {
				return lo
			}
			if c == prev {
				return ub
			}
			return lo + (ub-lo)*(rank-prev)/(c-prev)
		}
		lo, prev = ub, c
	}
	return lo
}

// counter sums a counter's matching series.
func counter(m podgatetest.Metrics, name string, kv ...string) float64 {
	return m.Value(name, kv...)
}
