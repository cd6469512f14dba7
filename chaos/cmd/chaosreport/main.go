// Command chaosreport renders the records that chaos scenarios append to
// $PODGATE_CHAOS_REPORT (JSON lines), and the fuzz runs hack/chaos.sh
// lists, into a Markdown report: each scenario, what held, its figures. It
// writes report-<date>.md and latest.md and exits non-zero when anything
// did not hold, a fuzz target failed, or there is nothing to report.
//
//	chaosreport -in raw.jsonl [-fuzz fuzz.tsv] -out chaos/results [-date 2006-01-02]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/podgate/podgate/chaos"
)

func main() {
	in := flag.String("in", "", "JSON lines written by the scenarios (PODGATE_CHAOS_REPORT)")
	fuzz := flag.String("fuzz", "", "tab-separated fuzz runs: package, target, seconds, ok|FAIL, detail")
	out := flag.String("out", "chaos/results", "directory for report-<date>.md and latest.md")
	date := flag.String("date", time.Now().UTC().Format("2006-01-02"), "date in the report's file name")
	flag.Parse()
	ok, err := run(*in, *fuzz, *out, *date)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaosreport:", err)
		os.Exit(2)
	}
	if !ok {
		fmt.Fprintln(os.Stderr, "chaosreport: not everything held; see", filepath.Join(*out, "latest.md"))
		os.Exit(1)
	}
}

func run(in, fuzzPath, out, date string) (bool, error) {
	if in == "" {
		return false, errors.New("-in is required")
	}
	f, err := os.Open(in)
	if err != nil {
		return false, err
	}
	defer f.Close()
	recs, err := readRecords(f)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", in, err)
	}
	var runs []fuzzRun
	if fuzzPath != "" {
		b, err := os.ReadFile(fuzzPath)
		if err != nil {
			return false, err
		}
		if runs, err = parseFuzz(string(b)); err != nil {
			return false, fmt.Errorf("reading %s: %w", fuzzPath, err)
		}
	}
	var buf bytes.Buffer
	ok := render(&buf, date, recs, runs)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return false, err
	}
	for _, name := range []string{"report-" + date + ".md", "latest.md"} {
		if err := os.WriteFile(filepath.Join(out, name), buf.Bytes(), 0o644); err != nil {
			return false, err
		}
	}
	return ok, nil
}

// readRecords parses one chaos.Record per non-empty line.
func readRecords(r io.Reader) ([]chaos.Record, error) {
	var recs []chaos.Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var rec chaos.Record
		if err := json.Unmarshal(line, &rec); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		recs = append(recs, rec)
	}
	return recs, sc.Err()
}

// fuzzRun is one `go test -fuzz` call.
type fuzzRun struct {
	Pkg, Target string
	Seconds     int
	OK          bool
	Detail      string
}

func parseFuzz(s string) ([]fuzzRun, error) {
	var runs []fuzzRun
	for n, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.SplitN(line, "\t", 5)
		if len(f) < 4 {
			return nil, fmt.Errorf("line %d: want package, target, seconds, result", n+1)
		}
		var r fuzzRun
		r.Pkg, r.Target = f[0], f[1]
		if _, err := fmt.Sscan(f[2], &r.Seconds); err != nil {
			return nil, fmt.Errorf("line %d: seconds %q: %w", n+1, f[2], err)
		}
		r.OK = f[3] == "ok"
		if len(f) == 5 {
			r.Detail = f[4]
		}
		runs = append(runs, r)
	}
	return runs, nil
}

var sectionOrder = []string{"faults", "load", "hostile", "isolation"}

// render writes the report and reports whether everything held.
func render(w io.Writer, date string, all []chaos.Record, runs []fuzzRun) bool {
	recs, superseded := newest(all)
	ok := len(recs) > 0
	held := 0
	for _, r := range recs {
		if r.Held {
			held++
		} else {
			ok = false
		}
	}
	fuzzSecs, fuzzFailed := 0, 0
	for _, r := range runs {
		fuzzSecs += r.Seconds
		if !r.OK {
			fuzzFailed++
			ok = false
		}
	}
	verdict := "everything held"
	if !ok {
		verdict = "NOT everything held"
	}
	fmt.Fprintf(w, "# podgate chaos report, %s\n\n", date)
	fmt.Fprintf(w, "**%s**: %d of %d scenarios held", verdict, held, len(recs))
	if len(runs) > 0 {
		fmt.Fprintf(w, "; %d fuzz targets for %s in total, %d failed", len(runs), time.Duration(fuzzSecs)*time.Second, fuzzFailed)
	}
	fmt.Fprint(w, ".\n\nProduced by `make chaos` on the local single-node cluster; each scenario states what \"held\" means and checks it.\n")

	bySection := map[string][]chaos.Record{}
	for _, r := range recs {
		bySection[r.Section] = append(bySection[r.Section], r)
	}
	sections := append([]string{}, sectionOrder...)
	for s := range bySection {
		if !contains(sectionOrder, s) {
			sections = append(sections, s)
		}
	}
	for _, s := range sections {
		rs := bySection[s]
		if len(rs) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n## %s\n", title(s))
		for _, r := range rs {
			mark := "held"
			if !r.Held {
				mark = "DID NOT HOLD"
			}
			size := "reduced size"
			if r.Full {
				size = "full size"
			}
			fmt.Fprintf(w, "\n### %s — %s\n\n%s, %.0f s.\n\n", r.Scenario, mark, size, r.Seconds)
			for _, c := range r.Checks {
				box := "x"
				if !c.Held {
					box = " "
				}
				fmt.Fprintf(w, "- [%s] %s", box, c.What)
				if c.Got != "" {
					fmt.Fprintf(w, " — %s", oneLine(c.Got))
				}
				fmt.Fprintln(w)
			}
			if len(r.Figures) > 0 {
				fmt.Fprint(w, "\n| figure | value |\n| --- | --- |\n")
				for _, f := range r.Figures {
					fmt.Fprintf(w, "| %s | %s |\n", cell(f.Name), cell(f.Value))
				}
			}
		}
	}
	if len(superseded) > 0 {
		fmt.Fprint(w, "\n## Superseded records\n\nThese scenarios were run again later the same day (`CHAOS_ONLY`); the newest record is the one shown above.\n\n")
		for _, r := range superseded {
			mark := "held"
			if !r.Held {
				mark = "did not hold"
			}
			fmt.Fprintf(w, "- %s, started %s: %s", r.Scenario, r.Started.UTC().Format("15:04"), mark)
			for _, c := range r.Checks {
				if !c.Held {
					fmt.Fprintf(w, "; failed: %s — %s", c.What, oneLine(c.Got))
				}
			}
			fmt.Fprintln(w)
		}
	}
	if len(runs) > 0 {
		fmt.Fprint(w, "\n## Fuzzing\n\n| package | target | time | result | detail |\n| --- | --- | --- | --- | --- |\n")
		for _, r := range runs {
			res := "ok"
			if !r.OK {
				res = "**FAILED** (crasher kept under testdata/fuzz)"
			}
			fmt.Fprintf(w, "| %s | %s | %d s | %s | %s |\n", cell(r.Pkg), cell(r.Target), r.Seconds, res, cell(r.Detail))
		}
	}
	return ok
}

// newest keeps the last record of each scenario, in the order scenarios
// first appear, and returns the earlier ones separately: a scenario re-run
// after a fix supersedes its earlier record, which the report still lists.
func newest(all []chaos.Record) (latest, superseded []chaos.Record) {
	key := func(r chaos.Record) string { return r.Section + "\x00" + r.Scenario }
	last := map[string]int{}
	for i, r := range all {
		last[key(r)] = i
	}
	pos := map[string]int{}
	for i, r := range all {
		k := key(r)
		if last[k] != i {
			superseded = append(superseded, r)
			if _, ok := pos[k]; !ok {
				pos[k] = len(latest)
				latest = append(latest, chaos.Record{})
			}
			continue
		}
		if p, ok := pos[k]; ok {
			latest[p] = r
		} else {
			latest = append(latest, r)
		}
	}
	return latest, superseded
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

func title(s string) string {
	switch s {
	case "faults":
		return "Faults"
	case "load":
		return "Load and leaks"
	case "hostile":
		return "Hostile and bad input"
	case "isolation":
		return "Isolation"
	}
	if s == "" {
		return "Other"
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// cell makes s safe inside a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(oneLine(s), "|", `\|`) }
