package bench

import (
	"math"
	"slices"
	"time"
)

// Sample is one connection of one scenario, as written to the CSV.
type Sample struct {
	// Scenario and Label name the run ("burst", "qps 5/10").
	Scenario, Label string
	// Index numbers the connection within its run.
	Index int
	// Start is when the connection began, from the start of its run.
	Start time.Duration
	Timing
	// Err is empty for a successful connection.
	Err string
}

// OK reports whether the connection reached its prompt and echoed.
func (s Sample) OK() bool { return s.Err == "" }

// Summary is the distribution of one latency over a run.
type Summary struct {
	Count, Errors           int
	P50, P90, P99, Max, Min time.Duration
}

// Summarize computes the summary of f over the successful samples.
func Summarize(samples []Sample, f func(Sample) time.Duration) Summary {
	var vals []time.Duration
	s := Summary{}
	for _, x := range samples {
		if !x.OK() {
			s.Errors++
			continue
		}
		vals = append(vals, f(x))
	}
	s.Count = len(vals)
	if len(vals) == 0 {
		return s
	}
	slices.Sort(vals)
	s.P50, s.P90, s.P99 = Quantile(vals, 0.5), Quantile(vals, 0.9), Quantile(vals, 0.99)
	s.Min, s.Max = vals[0], vals[len(vals)-1]
	return s
}

// Quantile is the nearest-rank quantile q of sorted values: the smallest
// value with at least q of the values at or below it.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Prompt is the attach latency: TCP connect start to first prompt byte.
func Prompt(s Sample) time.Duration { return s.Prompt }

// Echo is the `echo ok` round trip.
func Echo(s Sample) time.Duration { return s.Echo }

// Filter returns the samples for which keep is true.
func Filter(samples []Sample, keep func(Sample) bool) []Sample {
	var out []Sample
	for _, s := range samples {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// ms formats a duration in milliseconds with one decimal.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
