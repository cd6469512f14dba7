package podgatetest

import (
	"context"
	"fmt"
	"net/http"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Ready reports whether /readyz answers 200.
func (s *Server) Ready(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+s.MetricsPort+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Scrape reads /metrics into metric families keyed by name.
func (s *Server) Scrape(ctx context.Context) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+s.MetricsPort+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping podgate: %w", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing podgate's metrics: %w", err)
	}
	return Metrics(fams), nil
}

// IdlePods is podgate_pool_pods{profile, state="idle"}, or 0 when it
// cannot be read.
func (s *Server) IdlePods(ctx context.Context, profile string) float64 {
	m, err := s.Scrape(ctx)
	if err != nil {
		return 0
	}
	return m.Value("podgate_pool_pods", "profile", profile, "state", "idle")
}

// Metrics is one scrape, keyed by metric name.
type Metrics map[string]*dto.MetricFamily

// Find returns the metrics of family name whose labels include every
// name/value pair in kv.
func (m Metrics) Find(name string, kv ...string) []*dto.Metric {
	fam := m[name]
	if fam == nil {
		return nil
	}
	var out []*dto.Metric
	for _, met := range fam.GetMetric() {
		if hasLabels(met, kv) {
			out = append(out, met)
		}
	}
	return out
}

// Value sums the gauge or counter values of the matching metrics, and for
// histograms their sample counts.
func (m Metrics) Value(name string, kv ...string) float64 {
	var sum float64
	for _, met := range m.Find(name, kv...) {
		switch {
		case met.Gauge != nil:
			sum += met.GetGauge().GetValue()
		case met.Counter != nil:
			sum += met.GetCounter().GetValue()
		case met.Histogram != nil:
			sum += float64(met.GetHistogram().GetSampleCount())
		case met.Untyped != nil:
			sum += met.GetUntyped().GetValue()
		}
	}
	return sum
}

// HistogramSum sums the observed values of the matching histograms.
func (m Metrics) HistogramSum(name string, kv ...string) float64 {
	var sum float64
	for _, met := range m.Find(name, kv...) {
		sum += met.GetHistogram().GetSampleSum()
	}
	return sum
}

func hasLabels(met *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, lp := range met.GetLabel() {
			if lp.GetName() == kv[i] && lp.GetValue() == kv[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
