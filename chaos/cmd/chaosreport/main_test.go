package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podgate/podgate/chaos"
)

const sample = `{"scenario":"pod deleted","section":"faults","held":true,"checks":[{"what":"plain message","held":true,"got":"\"podgate: your pod went away\""}],"figures":[{"name":"delete → exit","value":"2.7 s"}],"full":true,"seconds":22}

{"scenario":"10 000 cycles","section":"load","held":false,"checks":[{"what":"0 leaked pods","held":false,"got":"3 | leaked\nfound"}],"figures":null,"full":false,"seconds":100}
`

func TestRender(t *testing.T) {
	recs, err := readRecords(strings.NewReader(sample))
	if err != nil || len(recs) != 2 {
		t.Fatalf("readRecords: %d records, %v", len(recs), err)
	}
	runs, err := parseFuzz("./sshfront\tFuzzEnv\t60\tok\texecs 1200000\n./pool/profile\tFuzzAnnotations\t60\tFAIL\tcrasher\n")
	if err != nil || len(runs) != 2 || runs[0].Seconds != 60 || !runs[0].OK || runs[1].OK {
		t.Fatalf("parseFuzz: %+v, %v", runs, err)
	}
	var b bytes.Buffer
	if render(&b, "2026-11-22", recs, runs) {
		t.Error("render reported success with a failed scenario and a failed fuzz target")
	}
	out := b.String()
	for _, want := range []string{
		"NOT everything held", "1 of 2 scenarios held", "2 fuzz targets for 2m0s in total, 1 failed",
		"## Faults", "### pod deleted — held", "- [x] plain message", "| delete → exit | 2.7 s |",
		"## Load and leaks", "### 10 000 cycles — DID NOT HOLD", `- [ ] 0 leaked pods — 3 | leaked found`,
		"| ./sshfront | FuzzEnv | 60 s | ok | execs 1200000 |", "**FAILED**",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if !render(&b, "d", recs[:1], runs[:1]) {
		t.Errorf("render reported failure when everything held:\n%s", b.String())
	}
	if render(&b, "d", nil, nil) {
		t.Error("an empty report counts as success")
	}
}

func TestRunWritesFiles(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "raw.jsonl")
	if err := os.WriteFile(in, []byte(strings.SplitN(sample, "\n", 2)[0]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok, err := run(in, "", filepath.Join(dir, "out"), "2026-11-22")
	if err != nil || !ok {
		t.Fatalf("run = %v, %v", ok, err)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "out", "report-2026-11-22.md"))
	l, _ := os.ReadFile(filepath.Join(dir, "out", "latest.md"))
	if len(a) == 0 || !bytes.Equal(a, l) {
		t.Errorf("report and latest differ or are empty (%d, %d bytes)", len(a), len(l))
	}
	if _, err := readRecords(strings.NewReader("{not json\n")); err == nil {
		t.Error("a bad line was accepted")
	}
}

// TestRerunSupersedes: a scenario re-run after a fix counts by its newest
// record, and the earlier failure stays listed in the report.
func TestRerunSupersedes(t *testing.T) {
	recs, err := readRecords(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	fixed := recs[1]
	fixed.Held = true
	fixed.Checks = []chaos.Check{{What: "0 leaked pods", Held: true, Got: "0"}}
	var b bytes.Buffer
	if !render(&b, "d", append(append([]chaos.Record{}, recs...), fixed), nil) {
		t.Errorf("the re-run that held did not supersede the failed record:\n%s", b.String())
	}
	out := b.String()
	for _, want := range []string{"2 of 2 scenarios held", "### 10 000 cycles — held", "## Superseded records", "10 000 cycles, started", "did not hold; failed: 0 leaked pods"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "### pod deleted") > strings.Index(out, "### 10 000 cycles") {
		t.Error("scenarios are no longer in the order they first appeared")
	}
}
