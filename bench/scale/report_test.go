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
		"| API writes per warm login ≤ 2 | 1.50 (PATCH 1.50); with the used pod's deletion at logout 1.50 (PATCH 1.50) | **met** |",
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

// TestReportWritesAndFailedLogins: the writes target is judged on a warm
// login's own writes (the used pod's DELETE after the logout is shown
// beside them), and a login that failed misses the latency target with
// the count said, even when the p99 of those served is within it.
func TestReportWritesAndFailedLogins(t *testing.T) {
	small := Size{Size: 20, Login: bench.Summary{Count: 40, P50: 100 * time.Millisecond, P99: 200 * time.Millisecond},
		PerLogin: Requests{"PATCH": 1, "POST": 1, "DELETE": 1}, SyncP99: 0.001, SyncMax: 0.001, SyncPasses: 10}
	big := small
	big.Size = 5000
	big.Login = bench.Summary{Count: 35, Errors: 5, P50: 100 * time.Millisecond, P99: 220 * time.Millisecond}
	md := Report(&Results{Config: DefaultConfig(), Sizes: []Size{small, big}}, "s.csv", "l.csv", nil)
	for _, want := range []string{
		"| API writes per warm login ≤ 2 | 2.00 (PATCH 1.00, POST 1.00); with the used pod's deletion at logout 3.00 (DELETE 1.00, PATCH 1.00, POST 1.00) | **met** |",
		"(1.10 ×); 5 of 40 logins failed (see the replicas' warnings below) | **missed** |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// TestWarningsSection: the replicas' warnings are grouped by message,
// the most frequent first, with a pipe in a line kept inside its cell.
func TestWarningsSection(t *testing.T) {
	line := `time=2026-12-03T04:10:12Z level=WARN msg="claim record failed; ending the session" pod=p reason=changed err="a|b"`
	if got := logfmtValue(line, "msg"); got != "claim record failed; ending the session" {
		t.Errorf("msg = %q", got)
	}
	if got := logfmtValue(line, "reason"); got != "changed" {
		t.Errorf("reason = %q", got)
	}
	res := &Results{Config: DefaultConfig(), Warnings: []Warning{
		{Msg: "claim record failed; ending the session", Count: 74, Example: "r1 " + line},
		{Msg: "session failed", Count: 5, Example: "r0 x"},
	}}
	md := Report(res, "s.csv", "l.csv", nil)
	i, j := strings.Index(md, "| 74 | claim record failed"), strings.Index(md, "| 5 | session failed")
	if i < 0 || j < i {
		t.Errorf("warnings not listed most frequent first:\n%s", md)
	}
	if !strings.Contains(md, `a\|b`) {
		t.Errorf("a pipe in a warning line was not escaped:\n%s", md)
	}
}

// TestReportBurstWithoutRefill: a burst whose pool did not refill in time
// is still reported, with the shortfall said.
func TestReportBurstWithoutRefill(t *testing.T) {
	res := &Results{Config: DefaultConfig(), Burst: &Burst{Size: 5000, Samples: make([]bench.Sample, 3),
		Refill: "waiting for 5000 idle pods (have 4995): context deadline exceeded"}}
	md := Report(res, "s.csv", "l.csv", nil)
	if !strings.Contains(md, "## Burst: 3 logins at once at a pool of 5000") || !strings.Contains(md, "did not refill within 3m0s after the burst (waiting for 5000 idle pods (have 4995)") {
		t.Errorf("report lacks the burst or its refill shortfall:\n%s", md)
	}
}
