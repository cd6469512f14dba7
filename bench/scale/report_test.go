package scale

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/podgate/podgate/bench"
)

func TestPerLoginSubtractsTheBackground(t *testing.T) {
	window := 10 * time.Second
	got := perLogin(Requests{"GET": 50, "PATCH": 25, "POST": 20, "PUT": 10}, Requests{"GET": 2, "PUT": 1}, window, 10)
	want := Requests{"GET": 3, "PATCH": 2.5, "POST": 2, "PUT": 0}
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-9 {
			t.Errorf("%s per login = %v, want %v", k, got[k], v)
		}
	}
	if got.Reads() != 3 || got.Writes() != 4.5 {
		t.Errorf("reads %v writes %v, want 3 and 4.5", got.Reads(), got.Writes())
	}
}

// TestReportJudgesEveryTarget renders a run that meets two targets and
// misses two, and checks each verdict sits beside its figure.
func TestReportJudgesEveryTarget(t *testing.T) {
	size := func(n int, p99 time.Duration, rss int64, writes, sync float64) Size {
		return Size{Size: n, Login: bench.Summary{Count: 10, P50: p99 / 2, P99: p99},
			PerLogin: Requests{"PATCH": writes}, SyncP50: sync / 2, SyncP99: sync, SyncMax: sync, SyncPasses: 100,
			Replicas: []ReplicaUse{{ID: "r0", Leader: true, RSS: rss, Goroutines: 100}}}
	}
	res := &Results{Config: DefaultConfig(), Sizes: []Size{
		size(20, 100*time.Millisecond, 50<<20, 1, 0.001),
		size(5000, 200*time.Millisecond, 250<<20, 1.5, 0.3),
	}}
	md := Report(res, "s.csv", "l.csv", nil)
	for _, want := range []string{
		"| podgate RSS ≤ 300 MiB per replica | largest replica 250 MiB | **met** |",
		"(2.00 ×) | **missed** |",
		"| API writes per warm login ≤ 2 | 1.50 (PATCH 1.50) | **met** |",
		"p99 300 ms",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if n := strings.Count(md, "**missed**"); n != 2 {
		t.Errorf("%d targets missed in the report, want 2 (login p99, sync pass):\n%s", n, md)
	}
}
