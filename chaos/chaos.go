// Package chaos is podgate's reliability and security suite: faults on the
// real local cluster, load and leak checks, hostile input and isolation.
// Each scenario is a Go test that states what "held" means, checks it and
// records its figures. `make chaos` runs the full-size scenarios
// (PODGATE_CHAOS=full) and renders the records into a report; `make test`
// runs the same scenarios at a reduced size.
package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// Full reports whether the full-size scenarios were asked for, as
// `make chaos` does; otherwise scenarios run at the size that fits into
// `make test`.
func Full() bool { return os.Getenv("PODGATE_CHAOS") == "full" }

// Size returns full under `make chaos` and quick otherwise.
func Size(quick, full int) int {
	if Full() {
		return full
	}
	return quick
}

// Record is one scenario's line in the report.
type Record struct {
	Scenario string    `json:"scenario"`
	Section  string    `json:"section"` // faults, load, hostile, isolation
	Held     bool      `json:"held"`
	Checks   []Check   `json:"checks"`
	Figures  []Figure  `json:"figures"`
	Full     bool      `json:"full"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
}

// Check is one stated property and whether it held.
type Check struct {
	What string `json:"what"`
	Held bool   `json:"held"`
	Got  string `json:"got,omitempty"`
}

// Figure is one measured number, e.g. "goroutines before/after" = "41 → 41".
type Figure struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Scenario collects one test's checks and figures and appends them to the
// report file named by PODGATE_CHAOS_REPORT when the test ends.
type Scenario struct {
	t testing.TB

	mu  sync.Mutex // protects rec
	rec Record
}

// NewScenario starts recording the scenario that test t runs.
func NewScenario(t testing.TB, section, name string) *Scenario {
	s := &Scenario{t: t, rec: Record{Scenario: name, Section: section, Full: Full(), Started: time.Now()}}
	t.Cleanup(s.write)
	return s
}

// Check records whether what held, failing the test (without stopping it)
// when it did not. got describes what was observed. It is safe to call
// from any goroutine.
func (s *Scenario) Check(held bool, what, gotFormat string, args ...any) bool {
	s.t.Helper()
	got := fmt.Sprintf(gotFormat, args...)
	s.mu.Lock()
	s.rec.Checks = append(s.rec.Checks, Check{What: what, Held: held, Got: got})
	s.mu.Unlock()
	if !held {
		s.t.Errorf("did not hold: %s (got %s)", what, got)
	} else {
		s.t.Logf("held: %s (%s)", what, got)
	}
	return held
}

// Figure records a measured number for the report.
func (s *Scenario) Figure(name, format string, args ...any) {
	v := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.rec.Figures = append(s.rec.Figures, Figure{Name: name, Value: v})
	s.mu.Unlock()
	s.t.Logf("figure: %s = %s", name, v)
}

// write appends the record as one JSON line; a scenario held when the test
// did not fail (a skipped test records nothing).
func (s *Scenario) write() {
	if s.t.Skipped() {
		return
	}
	path := os.Getenv("PODGATE_CHAOS_REPORT")
	if path == "" {
		return
	}
	s.mu.Lock()
	rec := s.rec
	s.mu.Unlock()
	rec.Held = !s.t.Failed()
	rec.Seconds = time.Since(rec.Started).Seconds()
	b, err := json.Marshal(rec)
	if err != nil {
		s.t.Errorf("encoding the chaos record: %v", err)
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Errorf("opening the chaos report: %v", err)
		return
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		s.t.Errorf("writing the chaos report: %v", err)
	}
}
