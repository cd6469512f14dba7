package bench

import (
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"

	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

// What other benchmarks (bench/scale) reuse of this package's measuring
// and drawing.

// Phases splits a window's server time by podgate phase, from two scrapes
// of one replica.
func Phases(before, after podgatetest.Metrics) []Phase { return phases(before, after) }

// Histogram is one histogram's change between two scrapes, summed over
// the matching series.
type Histogram struct{ h hist }

// HistogramDelta is after minus before for the series of name whose
// labels include kv.
func HistogramDelta(before, after podgatetest.Metrics, name string, kv ...string) Histogram {
	return Histogram{histDelta(before, after, name, kv...)}
}

// Add sums two histograms with the same buckets (e.g. of two replicas).
func (h Histogram) Add(o Histogram) Histogram {
	if len(h.h.bounds) == 0 {
		return o
	}
	out := hist{bounds: h.h.bounds, cumulative: append([]float64(nil), h.h.cumulative...), count: h.h.count + o.h.count, sum: h.h.sum + o.h.sum}
	for i := range out.cumulative {
		if i < len(o.h.cumulative) {
			out.cumulative[i] += o.h.cumulative[i]
		}
	}
	return Histogram{out}
}

// Count is the number of observations.
func (h Histogram) Count() float64 { return h.h.count }

// Sum is the sum of the observations.
func (h Histogram) Sum() float64 { return h.h.sum }

// Quantile estimates quantile q from the buckets, as Prometheus does; NaN
// without observations.
func (h Histogram) Quantile(q float64) float64 { return h.h.quantile(q) }

// Above counts the observations greater than bound, a bucket boundary
// (NaN when it is not one).
func (h Histogram) Above(bound float64) float64 { return h.h.above(bound) }

// CPUWindow measures the CPU time of every process on this machine, by
// name, while fn runs.
func CPUWindow(fn func()) ([]CPUUse, time.Duration) { return cpuWindow(fn) }

// RSS is a process's resident set size in bytes.
func RSS(pid int) (int64, error) { return rss(pid) }

// NewPlot starts a plot in this package's style.
func NewPlot(title, x, y string) *plot.Plot { return newPlot(title, x, y) }

// StyleLine gives line i of a plot its colour and width.
func StyleLine(l *plotter.Line, i int) { style(l, i) }

// FormatDuration renders a latency in ms or s, as the reports do.
func FormatDuration(d time.Duration) string { return fms(d) }
