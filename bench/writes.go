package bench

import (
	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

// APICount is what podgate's own counters say about a run's API use.
type APICount struct {
	// Logins is how many first outputs podgate_attach_api_requests saw
	// (warm logins only); Requests the API requests they waited for in
	// all; Waited how many waited for at least one.
	Logins, Requests, Waited float64
	// Writes are podgate's API writes during the run, keyed
	// "resource verb" (e.g. "pods patch").
	Writes map[string]float64
}

// apiCount reads a run's API use from two scrapes.
func apiCount(before, after podgatetest.Metrics) APICount {
	h := histDelta(before, after, "podgate_attach_api_requests", "result", "warm")
	c := APICount{Logins: h.count, Requests: h.sum, Waited: h.above(0), Writes: map[string]float64{}}
	key := func(labels map[string]string) string { return labels["resource"] + " " + labels["verb"] }
	for _, m := range after.Find("podgate_kube_writes_total") {
		c.Writes[key(labelMap(m.GetLabel()))] += m.GetCounter().GetValue()
	}
	for _, m := range before.Find("podgate_kube_writes_total") {
		c.Writes[key(labelMap(m.GetLabel()))] -= m.GetCounter().GetValue()
	}
	return c
}

// labelMap turns a metric's label pairs into a map.
func labelMap[P interface {
	GetName() string
	GetValue() string
}](pairs []P) map[string]string {
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		out[p.GetName()] = p.GetValue()
	}
	return out
}
