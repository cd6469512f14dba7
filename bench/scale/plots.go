package scale

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/podgate/podgate/bench"
)

// series is one line of a plot against pool size.
type series struct {
	name string
	y    func(Size) float64
}

// Plots draws the figures against pool size (log axis) into dir: login
// latency, replica memory, API requests per login and the leader's sync
// pass, each with its target where the issue sets one.
func Plots(res *Results, dir, stamp string) ([]string, error) {
	if len(res.Sizes) == 0 {
		return nil, nil
	}
	var p20 float64
	if s := res.Sizes[0]; s.Login.Count > 0 {
		p20 = msOf(s.Login.P99)
	}
	plots := []struct {
		file, title, y string
		lines          []series
		target         float64
		targetName     string
	}{
		{"latency", "Login latency against pool size", "milliseconds", []series{
			{"login p50 (connect → prompt)", func(s Size) float64 { return msOf(s.Login.P50) }},
			{"login p99", func(s Size) float64 { return msOf(s.Login.P99) }},
			{"claim phase p99", func(s Size) float64 { return s.ClaimP99 * 1000 }},
		}, targetLoginP99x * p20, "target: 1.5 × the smallest pool's p99"},
		{"memory", "podgate memory against pool size", "MiB", []series{
			{"largest replica's RSS", func(s Size) float64 { return float64(s.MaxRSS()) / (1 << 20) }},
		}, targetRSS >> 20, "target 300 MiB"},
		{"api", "API requests per warm login (all replicas) against pool size", "requests per login", []series{
			{"writes (POST, PUT, PATCH, DELETE)", func(s Size) float64 { return s.PerLogin.Writes() }},
			{"reads (GET)", func(s Size) float64 { return s.PerLogin.Reads() }},
		}, targetWritesPerLog, "target: 2 writes"},
		{"sync", "The leader's sync (reconcile) pass against pool size", "milliseconds", []series{
			{"p50", func(s Size) float64 { return s.SyncP50 * 1000 }},
			{"p99", func(s Size) float64 { return s.SyncP99 * 1000 }},
		}, targetSyncPass * 1000, "target 100 ms"},
	}
	var files []string
	for _, pl := range plots {
		p := bench.NewPlot(pl.title, "idle pods in the pool (log scale)", pl.y)
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		top := pl.target
		for i, sr := range pl.lines {
			var xy plotter.XYs
			for _, s := range res.Sizes {
				if v := sr.y(s); !math.IsNaN(v) {
					xy = append(xy, plotter.XY{X: float64(s.Size), Y: v})
					top = max(top, v)
				}
			}
			if len(xy) == 0 {
				continue
			}
			l, pts, err := plotter.NewLinePoints(xy)
			if err != nil {
				return files, err
			}
			bench.StyleLine(l, i)
			pts.Color = l.Color
			pts.Radius = vg.Points(3)
			p.Add(l, pts)
			p.Legend.Add(sr.name, l)
		}
		if pl.target > 0 {
			lo, hi := float64(res.Sizes[0].Size), float64(res.Sizes[len(res.Sizes)-1].Size)
			t, err := plotter.NewLine(plotter.XYs{{X: lo, Y: pl.target}, {X: hi, Y: pl.target}})
			if err != nil {
				return files, err
			}
			t.Color = color.Gray{Y: 120}
			t.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
			p.Add(t)
			p.Legend.Add(pl.targetName, t)
		}
		// Headroom keeps the legend (top left) clear of the lines.
		p.Y.Min, p.Y.Max = 0, 1.5*top
		f := filepath.Join(dir, stamp+"-"+pl.file+".png")
		if err := p.Save(9*vg.Inch, 5.5*vg.Inch, f); err != nil {
			return files, fmt.Errorf("saving %s: %w", f, err)
		}
		files = append(files, f)
	}
	return files, nil
}
