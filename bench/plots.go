package bench

import (
	"fmt"
	"image/color"
	"path/filepath"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Plots draws the PNGs of a run into dir and returns their paths: latency
// CDFs warm vs cold (log axis), the burst timeline, the QPS/burst sweep and
// the sustained hit ratio over time. Plots without data are skipped.
func Plots(res *Results, dir, stamp string) ([]string, error) {
	var files []string
	save := func(p *plot.Plot, name string) error {
		f := filepath.Join(dir, stamp+"-"+name+".png")
		if err := p.Save(9*vg.Inch, 5.5*vg.Inch, f); err != nil {
			return fmt.Errorf("saving %s: %w", f, err)
		}
		files = append(files, f)
		return nil
	}
	if len(res.Warm.Samples)+len(res.Cold.Samples) > 0 {
		if err := save(cdfPlot(res), "cdf"); err != nil {
			return files, err
		}
	}
	if len(res.Sweep) > 0 {
		if err := save(timelinePlot(res), "burst-timeline"); err != nil {
			return files, err
		}
		if err := save(sweepPlot(res), "sweep"); err != nil {
			return files, err
		}
	}
	if len(res.Sustained.Samples) > 0 {
		if err := save(sustainedPlot(res), "sustained"); err != nil {
			return files, err
		}
	}
	return files, nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.X.Label.Text, p.Y.Label.Text = x, y
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true
	return p
}

func style(l *plotter.Line, i int) {
	l.Color = plotutil.Color(i)
	l.Width = vg.Points(2)
}

// cdfPlot is the distribution of attach latency, warm against cold.
func cdfPlot(res *Results) *plot.Plot {
	p := newPlot("Attach latency (TCP connect → first prompt byte), warm pool vs pod per connection",
		"milliseconds (log scale)", "fraction of connections")
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	// Headroom above 1 keeps the legend (top left) clear of the curves.
	p.Y.Min, p.Y.Max = 0, 1.15
	for i, r := range []Run{res.Warm, res.WarmSh, res.WarmBusy, res.Cold} {
		var v []float64
		for _, s := range r.Samples {
			if s.OK() && s.Prompt > 0 {
				v = append(v, ms(s.Prompt))
			}
		}
		if len(v) == 0 {
			continue
		}
		slices.Sort(v)
		xy := make(plotter.XYs, len(v))
		for j, x := range v {
			xy[j] = plotter.XY{X: x, Y: float64(j+1) / float64(len(v))}
		}
		l, _ := plotter.NewLine(xy)
		style(l, i)
		l.StepStyle = plotter.PostStep
		p.Add(l)
		name := map[string]string{"warm": "warm pool, bash -l", "warm-sh": "warm pool, /bin/sh", "warm-busy": "warm pool during refill, bash -l", "cold": "pod per connection, bash -l"}[r.Scenario]
		p.Legend.Add(fmt.Sprintf("%s (n=%d, p50 %s)", name, len(v), fms(Summarize(r.Samples, Prompt).P50)), l)
	}
	p.X.Max *= 1.5 // the slowest curve's last step stays visible
	return p
}

// timelinePlot shows how many users of each burst had their prompt over
// time since the burst started.
func timelinePlot(res *Results) *plot.Plot {
	p := newPlot(fmt.Sprintf("Burst of %d: users at their prompt over time, per client-go QPS/burst", res.Config.Burst),
		"seconds since the burst started", "users with a prompt")
	for i, r := range res.Sweep {
		var done []float64
		for _, s := range r.Samples {
			if s.OK() {
				done = append(done, (s.Start + s.Prompt).Seconds())
			}
		}
		slices.Sort(done)
		xy := plotter.XYs{{X: 0, Y: 0}}
		for j, t := range done {
			xy = append(xy, plotter.XY{X: t, Y: float64(j + 1)})
		}
		l, _ := plotter.NewLine(xy)
		style(l, i)
		l.StepStyle = plotter.PostStep
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("QPS/burst %s (all in %s)", r.QPS, fms(allIn(r))), l)
	}
	p.Legend.Left = false
	p.Legend.Top = false
	p.Legend.XOffs = -vg.Points(10)
	p.Legend.YOffs = vg.Points(20)
	return p
}

// sweepPlot shows prompt latency percentiles per QPS/burst setting.
func sweepPlot(res *Results) *plot.Plot {
	p := newPlot(fmt.Sprintf("Burst of %d: attach latency of the users let in, by client-go QPS/burst", res.Config.Burst),
		"PODGATE_KUBE_QPS / PODGATE_KUBE_BURST", "milliseconds")
	var names []string
	for _, r := range res.Sweep {
		// Refused users have no latency; say so on the axis, or a
		// setting that turned most users away would look fast.
		name := r.QPS.String()
		if e := Summarize(r.Samples, Prompt).Errors; e > 0 {
			name += fmt.Sprintf("\n(%d of %d refused)", e, len(r.Samples))
		}
		names = append(names, name)
	}
	p.NominalX(names...)
	top := 0.0
	for k, q := range []struct {
		name string
		f    func(Summary) time.Duration
	}{{"p50", func(s Summary) time.Duration { return s.P50 }}, {"p90", func(s Summary) time.Duration { return s.P90 }},
		{"p99", func(s Summary) time.Duration { return s.P99 }}, {"max", func(s Summary) time.Duration { return s.Max }}} {
		xy := make(plotter.XYs, len(res.Sweep))
		for i, r := range res.Sweep {
			xy[i] = plotter.XY{X: float64(i), Y: ms(q.f(Summarize(r.Samples, Prompt)))}
			top = max(top, xy[i].Y)
		}
		l, pts, _ := plotter.NewLinePoints(xy)
		style(l, k)
		pts.Color = plotutil.Color(k)
		pts.Shape = draw.CircleGlyph{}
		pts.Radius = vg.Points(4)
		p.Add(l, pts)
		p.Legend.Add(q.name, l, pts)
	}
	// Headroom keeps the legend (top left) clear of the lines.
	p.Y.Min, p.Y.Max = 0, 1.3*top
	return p
}

// sustainedPlot shows the hit ratio per window and podgate's idle pods.
func sustainedPlot(res *Results) *plot.Plot {
	s := res.Sustained
	p := newPlot(fmt.Sprintf("Sustained %g arrivals/s: hit ratio per %v window and the pool", res.Config.Rate, binWidth),
		"seconds since the start", "hit ratio (%) / pods")
	top := 100.0
	var hr plotter.XYs
	for _, b := range s.Bins {
		if n := b.Hits + b.Misses + b.Errors; n > 0 {
			hr = append(hr, plotter.XY{X: (b.From + binWidth/2).Seconds(), Y: 100 * float64(b.Hits) / float64(n)})
		}
	}
	if len(hr) > 0 {
		l, pts, _ := plotter.NewLinePoints(hr)
		style(l, 0)
		pts.Color = plotutil.Color(0)
		pts.Shape = draw.CircleGlyph{}
		p.Add(l, pts)
		p.Legend.Add("hit ratio of arrivals in the window (%)", l, pts)
	}
	for i, series := range []struct {
		name string
		v    func(ServerPoint) float64
	}{
		{"idle Ready pods (podgate_pool_pods)", func(pt ServerPoint) float64 { return pt.Idle }},
		{"idle pods starting", func(pt ServerPoint) float64 { return pt.Warming }},
		{"idle target (podgate_pool_target)", func(pt ServerPoint) float64 { return pt.Target }},
	} {
		var xy plotter.XYs
		for _, pt := range s.Server {
			xy = append(xy, plotter.XY{X: pt.At.Seconds(), Y: series.v(pt)})
			top = max(top, series.v(pt))
		}
		if len(xy) > 0 {
			l, _ := plotter.NewLine(xy)
			style(l, i+1)
			l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
			p.Add(l)
			p.Legend.Add(series.name, l)
		}
	}
	target, _ := plotter.NewLine(plotter.XYs{{X: 0, Y: 99}, {X: res.Config.For.Seconds(), Y: 99}})
	target.Color = color.Gray{Y: 120}
	target.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
	p.Add(target)
	p.Legend.Add("target 99 %", target)
	// Headroom above the highest line keeps the legend (top right)
	// clear of the lines.
	p.Y.Min, p.Y.Max = 0, 1.6*top
	p.Legend.Top = true
	return p
}
