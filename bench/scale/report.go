package scale

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/podgate/podgate/bench"
)

// Targets are issue 16's, at the largest size (5,000 idle pods on 100
// nodes). They are reported beside the figures, never asserted.
const (
	targetRSS          = 300 << 20
	targetLoginP99x    = 1.5
	targetWritesPerLog = 2.0
	targetSyncPass     = 0.100
)

// Write writes the report, the CSVs and the plots of res into dir and
// returns their paths.
func Write(res *Results, dir, stamp string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	write := func(name string, fill func(io.Writer) error) error {
		var b bytes.Buffer
		if err := fill(&b); err != nil {
			return err
		}
		p := filepath.Join(dir, name)
		files = append(files, p)
		return os.WriteFile(p, b.Bytes(), 0o644)
	}
	sizesCSV, loginsCSV := "sizes-"+stamp+".csv", "logins-"+stamp+".csv"
	if err := write(sizesCSV, res.writeSizesCSV); err != nil {
		return files, err
	}
	if err := write(loginsCSV, res.writeLoginsCSV); err != nil {
		return files, err
	}
	plots, err := Plots(res, dir, stamp)
	files = append(files, plots...)
	if err != nil {
		return files, err
	}
	md := Report(res, sizesCSV, loginsCSV, plots)
	for _, name := range []string{"report-" + stamp + ".md", "latest.md"} {
		if err := write(name, func(w io.Writer) error { _, err := io.WriteString(w, md); return err }); err != nil {
			return files, err
		}
	}
	return files, nil
}

var sizeColumns = []string{"pool", "fill_s", "fill_apiserver_cores", "logins", "login_errors", "login_p50_ms", "login_p99_ms",
	"claim_p50_ms", "claim_p99_ms", "reads_per_login", "writes_per_login", "background_reads_per_s", "background_writes_per_s",
	"leader_sync_p50_ms", "leader_sync_p99_ms", "leader_sync_passes", "apiserver_cpu_ms_per_login",
	"apf_executed", "apf_queued", "apf_wait_p99_ms", "apf_rejected", "max_rss_mib", "goroutines_per_replica"}

func (r *Results) writeSizesCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(sizeColumns)
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	for _, s := range r.Sizes {
		var gor []string
		for _, u := range s.Replicas {
			gor = append(gor, strconv.Itoa(int(u.Goroutines)))
		}
		_ = cw.Write([]string{strconv.Itoa(s.Size), f(s.Fill.Seconds()), f(s.FillAPIServerCPU), strconv.Itoa(s.Login.Count),
			strconv.Itoa(s.Login.Errors), f(msOf(s.Login.P50)), f(msOf(s.Login.P99)), f(s.ClaimP50 * 1000), f(s.ClaimP99 * 1000),
			f(s.PerLogin.Reads()), f(s.PerLogin.Writes()), f(s.Background.Reads()), f(s.Background.Writes()),
			f(s.SyncP50 * 1000), f(s.SyncP99 * 1000), f(s.SyncPasses), f(s.APIServerCPU * 1000),
			f(s.APF.Executed), f(s.APF.Queued), f(s.APF.WaitP99 * 1000), f(s.APF.Rejected),
			f(float64(s.MaxRSS()) / (1 << 20)), strings.Join(gor, "/")})
	}
	cw.Flush()
	return cw.Error()
}

func (r *Results) writeLoginsCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"scenario", "pool", "index", "start_ms", "auth_ms", "prompt_ms", "echo_ms", "miss", "error"})
	var all []bench.Sample
	for _, s := range r.Sizes {
		all = append(all, s.Logins...)
	}
	if r.Burst != nil {
		all = append(all, r.Burst.Samples...)
	}
	for _, s := range all {
		_ = cw.Write([]string{s.Scenario, s.Label, strconv.Itoa(s.Index), fmtMS(s.Start), fmtMS(s.Auth), fmtMS(s.Prompt),
			fmtMS(s.Echo), strconv.FormatBool(s.Miss), s.Err})
	}
	cw.Flush()
	return cw.Error()
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func fmtMS(d time.Duration) string { return strconv.FormatFloat(msOf(d), 'f', 2, 64) }

// fs renders seconds as a latency, "–" when unmeasured.
func fs(s float64) string {
	if math.IsNaN(s) {
		return "–"
	}
	return bench.FormatDuration(time.Duration(s * float64(time.Second)))
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

// Report renders the Markdown report.
func Report(res *Results, sizesCSV, loginsCSV string, plots []string) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	m := res.Meta
	p("# podgate scale benchmark (issue 16)")
	p("")
	p("%s, commit %s, %v. `make bench-scale` wrote this report.", m.Date.UTC().Format("2006-01-02 15:04 UTC"), m.Commit, m.Duration.Round(time.Second))
	p("")
	p("- Cluster: %s; one real node and %d KWOK fake nodes (type=kwok, tainted); the default profile selects and tolerates them.", m.ServerVersion, res.Config.Nodes)
	p("- Machine: %d CPUs (%s), %s; load average %s at the start, %s at the end. Other work shares this machine.", m.CPUs, m.CPUModel, m.MemTotal, m.LoadStart, m.LoadEnd)
	p("- %d podgate replicas, authenticated as podgate's ServiceAccount with deploy/base's RBAC (a TokenRequest token, so API Priority and Fairness applies: flow schema `%s`). %d sequential warm logins per size, spread round-robin; each closes at once, so its pod is deleted and replaced.", res.Config.Replicas, podgateFlowSchema, res.Config.Logins)
	p("- Exec into a fake pod runs a local process (KWOK's ClusterExec, as nobody): podgate's prepared streams and pod-side wrapper run for real. Container start and pod networking are not simulated.")
	p("- Data: [%s](%s), [%s](%s).", sizesCSV, sizesCSV, loginsCSV, loginsCSV)
	p("")
	targetsSection(&b, res)
	sizesSection(&b, res)
	burstSection(&b, res)
	profilesSection(&b, res)
	if len(plots) > 0 {
		p("## Plots")
		p("")
		for _, f := range plots {
			p("![%s](%s)", filepath.Base(f), filepath.Base(f))
		}
		p("")
	}
	warningsSection(&b, res)
	if len(res.Failures) > 0 {
		p("## Not measured")
		p("")
		for _, f := range res.Failures {
			p("- %s", f)
		}
	}
	return b.String()
}

// warningsSection lists what the replicas logged at WARN or ERROR: why a
// login failed, when one did.
func warningsSection(b *strings.Builder, res *Results) {
	if len(res.Warnings) == 0 {
		return
	}
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	p("## What the replicas warned about")
	p("")
	p("Every WARN and ERROR line is in the run's `-warnings.log`. By message:")
	p("")
	p("| Count | Message | One line |")
	p("|---|---|---|")
	for i, w := range res.Warnings {
		if i == 15 {
			p("| … | %d more messages | |", len(res.Warnings)-i)
			break
		}
		ex := w.Example
		if len(ex) > 400 {
			ex = ex[:400] + "…"
		}
		p("| %d | %s | `%s` |", w.Count, mdCell(w.Msg), mdCell(strings.ReplaceAll(ex, "`", "'")))
	}
	p("")
}

// mdCell keeps a table cell on one line and its pipes literal.
func mdCell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "|", "\\|")
}

func targetsSection(b *strings.Builder, res *Results) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	if len(res.Sizes) == 0 {
		return
	}
	small, big := res.Sizes[0], res.Sizes[len(res.Sizes)-1]
	p("## Targets (at a pool of %d on %d nodes)", big.Size, res.Config.Nodes)
	p("")
	p("| Target | Measured | |")
	p("|---|---|---|")
	p("| podgate RSS ≤ 300 MiB per replica | largest replica %d MiB | %s |", big.MaxRSS()>>20, verdict(big.MaxRSS() <= targetRSS))
	ratio := float64(big.Login.P99) / float64(small.Login.P99)
	failed := ""
	if big.Login.Errors > 0 {
		failed = fmt.Sprintf("; %d of %d logins failed (see the replicas' warnings below)", big.Login.Errors, big.Login.Count+big.Login.Errors)
	}
	p("| login p99 ≤ 1.5 × the pool-%d figure (%s), every login served | %s (%.2f ×)%s | %s |", small.Size, bench.FormatDuration(small.Login.P99),
		bench.FormatDuration(big.Login.P99), ratio, failed, verdict(ratio <= targetLoginP99x && big.Login.Errors == 0))
	login := loginWrites(big.PerLogin)
	p("| API writes per warm login ≤ 2 | %.2f (%s); with the used pod's deletion at logout %.2f (%s) | %s |",
		login.Writes(), writes(login), big.PerLogin.Writes(), writes(big.PerLogin), verdict(login.Writes() <= targetWritesPerLog))
	p("| a reconcile (leader sync) pass ≤ 100 ms | p99 %s, max ≤ %s over %.0f passes | %s |", fs(big.SyncP99), fs(big.SyncMax), big.SyncPasses,
		verdict(!math.IsNaN(big.SyncP99) && big.SyncP99 <= targetSyncPass))
	p("")
	p("Writes count every replica's POST/PUT/PATCH/DELETE during the logins and the pool's refill after them, less the background (lease renewals) measured over a quiet window of %v. A warm login's own writes are its claim record and its pod's replacement (every write but DELETE, the target's figure); the used pod's DELETE follows the logout, and a pod is never given to a second user, so the cycle's floor is three. Exec and attach streams are not counted by client-go's request metrics, so prepared streams are not in them.", res.Config.Baseline)
	p("")
}

// loginWrites is r without its DELETEs: the writes a warm login causes,
// without the used pod's deletion after its logout.
func loginWrites(r Requests) Requests {
	out := Requests{}
	for k, v := range r {
		if k != "DELETE" {
			out[k] = v
		}
	}
	return out
}

// writes renders the write requests by method, e.g. "POST 1.00, PATCH 1.00".
func writes(r Requests) string {
	w := Requests{}
	for k, v := range r {
		if k != "GET" {
			w[k] = v
		}
	}
	return methods(w)
}

// methods renders requests by method.
func methods(r Requests) string {
	var keys []string
	for k, v := range r {
		if v >= 0.005 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, r[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func sizesSection(b *strings.Builder, res *Results) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	p("## By pool size")
	p("")
	p("| Pool | Fill (API server cores) | Login p50 / p99 (errors, misses) | Claim p50 / p99 | Reads / writes per login | Background reads / writes per s | Leader sync p50 / p99 | API server CPU per login | APF: executed, queued > 5 ms, wait p99, rejected | RSS per replica | Goroutines per replica |")
	p("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, s := range res.Sizes {
		misses := 0
		for _, l := range s.Logins {
			if l.Miss {
				misses++
			}
		}
		var rss, gor []string
		for _, u := range s.Replicas {
			mark := ""
			if u.Leader {
				mark = " (leader)"
			}
			rss = append(rss, fmt.Sprintf("%d MiB%s", u.RSS>>20, mark))
			gor = append(gor, strconv.Itoa(int(u.Goroutines)))
		}
		p("| %d | %v (%.2f) | %s / %s (%d, %d) | %s / %s | %.2f / %.2f | %.2f / %.2f | %s / %s | %.0f ms | %.0f, %.0f, %s, %.0f | %s | %s |",
			s.Size, s.Fill.Round(100*time.Millisecond), s.FillAPIServerCPU,
			bench.FormatDuration(s.Login.P50), bench.FormatDuration(s.Login.P99), s.Login.Errors, misses,
			fs(s.ClaimP50), fs(s.ClaimP99), s.PerLogin.Reads(), s.PerLogin.Writes(), s.Background.Reads(), s.Background.Writes(),
			fs(s.SyncP50), fs(s.SyncP99), s.APIServerCPU*1000,
			s.APF.Executed, s.APF.Queued, fs(s.APF.WaitP99), s.APF.Rejected, strings.Join(rss, ", "), strings.Join(gor, ", "))
	}
	p("")
	p("Fill is the time from raising the profile's pool size to the pool holding that many idle pods. Claim and sync are from podgate's histograms (bucket-interpolated). APF figures cover the fill and the logins of that size, for flow schema `%s` (podgate's requests, and any other ServiceAccount's on the cluster).", podgateFlowSchema)
	p("")
}

func burstSection(b *strings.Builder, res *Results) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	bu := res.Burst
	if bu == nil {
		return
	}
	p("## Burst: %d logins at once at a pool of %d", len(bu.Samples), bu.Size)
	p("")
	p("| Login p50 / p99 / max | Errors | Misses | Claim p50 / p99 | Reads / writes per login | Wall | API server CPU | podgate CPU (3 replicas) | APF: executed, queued, wait p99, rejected |")
	p("|---|---|---|---|---|---|---|---|---|")
	p("| %s / %s / %s | %d | %d | %s / %s | %.2f / %.2f | %v | %.1f s | %.1f s | %.0f, %.0f, %s, %.0f |",
		bench.FormatDuration(bu.Login.P50), bench.FormatDuration(bu.Login.P99), bench.FormatDuration(bu.Login.Max), bu.Login.Errors, bu.Misses,
		fs(bu.ClaimP50), fs(bu.ClaimP99), bu.PerLogin.Reads(), bu.PerLogin.Writes(), bu.Wall.Round(100*time.Millisecond),
		bu.APIServerCPU, bu.PodgateCPU, bu.APF.Executed, bu.APF.Queued, fs(bu.APF.WaitP99), bu.APF.Rejected)
	p("")
	var errs []string
	for _, s := range bu.Samples {
		if s.Err != "" && len(errs) < 3 {
			errs = append(errs, s.Err)
		}
	}
	if len(errs) > 0 {
		p("First errors: `%s`", strings.Join(errs, "`; `"))
		p("")
	}
	if bu.Refill != "" {
		p("The pool did not refill within %v after the burst (%s), so the requests per login count only the refill up to then.", refillWait, bu.Refill)
		p("")
	}
}

func profilesSection(b *strings.Builder, res *Results) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	if len(res.Profiles) == 0 {
		return
	}
	p("## Profiles of the leader at the largest pool")
	p("")
	p("The CPU profile spans %v of sequential logins; the heap profile follows it. Read them with `go tool pprof bin/podgate <file>`.", res.Config.ProfileFor)
	p("")
	for _, pr := range res.Profiles {
		p("### %s: %s", pr.Kind, filepath.Base(pr.File))
		p("")
		p("```")
		p("%s", pr.Top)
		p("```")
		p("")
	}
}
