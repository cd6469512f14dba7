package recording

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"
)

func newTestDir(t *testing.T, cfg Config) (*Dir, *clocktesting.FakeClock) {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = t.TempDir()
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 1 << 20
	}
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	d, err := NewDir(cfg, clk, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return d, clk
}

// castEvent is one decoded event line.
type castEvent struct {
	t    float64
	code string
	data string
}

// readCast decodes a cast file and checks it against the asciicast v2
// specification: a JSON object header with version 2 and integer width
// and height, then lines that are each a three-element array of a
// non-negative number that never decreases, a known event code and a
// string.
func readCast(t *testing.T, path string) (map[string]any, []castEvent) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	if !sc.Scan() {
		t.Fatalf("%s: empty", path)
	}
	var header map[string]any
	if err := json.Unmarshal(sc.Bytes(), &header); err != nil {
		t.Fatalf("header %q: %v", sc.Text(), err)
	}
	if header["version"] != float64(2) {
		t.Errorf("header version = %v, want 2", header["version"])
	}
	for _, k := range []string{"width", "height", "timestamp"} {
		if v, ok := header[k].(float64); !ok || v != float64(int64(v)) || v < 0 {
			t.Errorf("header %s = %v, want a non-negative integer", k, header[k])
		}
	}
	var events []castEvent
	last := 0.0
	for n := 2; sc.Scan(); n++ {
		var raw []json.RawMessage
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		if err := dec.Decode(&raw); err != nil || len(raw) != 3 {
			t.Fatalf("line %d %q: not a three-element array (%v)", n, sc.Text(), err)
		}
		var e castEvent
		if err := json.Unmarshal(raw[0], &e.t); err != nil || e.t < last {
			t.Fatalf("line %d: time %s is not a number at least %f", n, raw[0], last)
		}
		last = e.t
		if err := json.Unmarshal(raw[1], &e.code); err != nil || !strings.Contains("oirm", e.code) || len(e.code) != 1 {
			t.Fatalf("line %d: code %s is not one of o, i, r, m", n, raw[1])
		}
		if err := json.Unmarshal(raw[2], &e.data); err != nil {
			t.Fatalf("line %d: data %s is not a string", n, raw[2])
		}
		if !utf8.ValidString(e.data) {
			t.Fatalf("line %d: data is not UTF-8", n)
		}
		if e.code == "r" {
			var c, r int
			if _, err := fmt.Sscanf(e.data, "%dx%d", &c, &r); err != nil {
				t.Fatalf("line %d: resize %q is not COLSxROWS", n, e.data)
			}
		}
		events = append(events, e)
	}
	return header, events
}

func joined(events []castEvent, code string) string {
	var b strings.Builder
	for _, e := range events {
		if e.code == code {
			b.WriteString(e.data)
		}
	}
	return b.String()
}

func TestCastFormat(t *testing.T) {
	d, clk := newTestDir(t, Config{})
	s, err := d.Start(Meta{ConnID: "abc", Session: 2, User: "alice", Profile: "default", Start: clk.Now(),
		Term: "xterm-256color", Cols: 100, Rows: 30, Command: "/bin/bash -l", Input: true})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(s.Path()) != "20261202T100000Z-abc-2.cast" {
		t.Errorf("file name %s", filepath.Base(s.Path()))
	}
	euro := []byte("€") // three bytes, split across two writes below
	out := []string{"$ ", "\x1b[1mbold\x1b[0m \"quoted\" back\\slash\ttab\r\n", string(euro[:1]), string(euro[1:]) + " \x00\x7f", "\xff bad byte"}
	s.Output([]byte(out[0]))
	s.Input([]byte("l"))
	clk.Step(1500 * time.Millisecond)
	s.Output([]byte("l"))
	s.Resize(120, 40)
	for _, o := range out[1:] {
		clk.Step(10 * time.Millisecond)
		s.Output([]byte(o))
	}
	sum, err := s.Close()
	if err != nil || sum.Truncated {
		t.Fatalf("close: %+v, %v", sum, err)
	}
	header, events := readCast(t, s.Path())
	if header["width"] != float64(100) || header["height"] != float64(30) || header["env"].(map[string]any)["TERM"] != "xterm-256color" {
		t.Errorf("header %v", header)
	}
	want := "$ l" + out[1] + "€ \x00\x7f\uFFFD bad byte"
	if got := joined(events, "o"); got != want {
		t.Errorf("output = %q\nwant     %q", got, want)
	}
	if got := joined(events, "i"); got != "l" {
		t.Errorf("input = %q, want the echoed l", got)
	}
	if got := joined(events, "r"); got != "120x40" {
		t.Errorf("resize = %q", got)
	}
	// The echoed key is recorded with its echo, 1.5 s in.
	for _, e := range events {
		if e.code == "i" && e.t != 1.5 {
			t.Errorf("input event at %f, want 1.5", e.t)
		}
	}
	if st, _ := os.Stat(s.Path()); st.Size() != sum.Bytes || st.Mode().Perm() != 0o600 {
		t.Errorf("file size %d mode %v; summary says %d bytes", st.Size(), st.Mode(), sum.Bytes)
	}
}

func TestCastOutputOnlyRecordsNoInput(t *testing.T) {
	d, clk := newTestDir(t, Config{})
	s, err := d.Start(Meta{ConnID: "x", Session: 1, Start: clk.Now(), Cols: 80, Rows: 24})
	if err != nil {
		t.Fatal(err)
	}
	s.Input([]byte("typed"))
	s.Output([]byte("typed"))
	s.Close()
	_, events := readCast(t, s.Path())
	if joined(events, "i") != "" || joined(events, "o") != "typed" {
		t.Errorf("events %v", events)
	}
}

func TestCastSizeLimit(t *testing.T) {
	d, clk := newTestDir(t, Config{MaxBytes: 4096})
	s, err := d.Start(Meta{ConnID: "x", Session: 1, Start: clk.Now(), Cols: 80, Rows: 24})
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("x", 100) + "\r\n")
	for range 100 {
		s.Output(line)
	}
	sum, err := s.Close()
	if err != nil || !sum.Truncated {
		t.Fatalf("summary %+v, %v; want truncated", sum, err)
	}
	_, events := readCast(t, s.Path())
	lastEvent := events[len(events)-1]
	if lastEvent.code != "m" || !strings.Contains(lastEvent.data, "size limit") {
		t.Errorf("last event %+v, want the size-limit marker", lastEvent)
	}
	if sum.Bytes > 4096+200 {
		t.Errorf("%d bytes written for a 4096-byte limit", sum.Bytes)
	}
}

// TestSlowDiskNeverBlocks writes into a pipe nobody reads: the session's
// writes return at once, the overflow is dropped and, once the disk
// catches up, a marker in the cast says how much was lost.
func TestSlowDiskNeverBlocks(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// O_RDWR opens a FIFO without waiting for a reader.
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	d, clk := newTestDir(t, Config{})
	s := &Session{path: fifo, start: clk.Now(), clock: clk, dir: d, spool: newSpool(w, 1<<40)}
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = 'y'
	}
	// Far more than the pipe (64 KiB) and the backlog (4 MiB) hold.
	for range 2 * maxBacklog / len(chunk) {
		s.Output(chunk)
	}
	r, err := os.Open(fifo)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := make(chan []byte)
	go func() {
		var got []byte
		buf := make([]byte, 1<<20)
		for !bytes.Contains(got, []byte("recording lost")) {
			n, err := r.Read(buf)
			if err != nil {
				break
			}
			got = append(got, buf[:n]...)
		}
		done <- got
	}()
	s.Output([]byte("after the stall"))
	got := <-done
	if !bytes.Contains(got, []byte(`"m", "podgate: `)) {
		t.Errorf("no lost-bytes marker in what reached the disk")
	}
	s.Close()
}

func TestSweepRemovesOldRecordingsOnly(t *testing.T) {
	d, clk := newTestDir(t, Config{MaxAge: 24 * time.Hour})
	dir := d.cfg.Path
	for name, age := range map[string]time.Duration{
		"old.cast": 25 * time.Hour, "new.cast": time.Hour, "notes.txt": 48 * time.Hour,
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		mt := clk.Now().Add(-age)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	d.sweep()
	for name, want := range map[string]bool{"old.cast": false, "new.cast": true, "notes.txt": true} {
		if _, err := os.Stat(filepath.Join(dir, name)); (err == nil) != want {
			t.Errorf("%s exists: %t, want %t", name, err == nil, want)
		}
	}
}

func TestNewDirRefusesBadDirectories(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct{ path, want string }{
		{"/nonexistent/recordings", "no such file"},
		{file, "not a directory"},
		{"/proc", "not writable"},
	} {
		_, err := NewDir(Config{Path: tc.path, MaxBytes: 1 << 20}, clocktesting.NewFakeClock(time.Now()), log, prometheus.NewRegistry())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewDir(%s) = %v, want %q", tc.path, err, tc.want)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\\n\r\t\x00\x1f\x7f", "€ \u2028", "\x1b[0m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			s = toValidUTF8(s)
		}
		var back string
		enc := appendJSONString(nil, s)
		if err := json.Unmarshal(enc, &back); err != nil || back != s {
			t.Fatalf("appendJSONString(%q) = %s decodes to %q, %v", s, enc, back, err)
		}
	})
}

func FuzzUTF8Carry(f *testing.F) {
	f.Add([]byte("a€b"), 2)
	f.Add([]byte("\xff\xfe€"), 1)
	f.Fuzz(func(t *testing.T, p []byte, cut int) {
		if cut < 0 || cut > len(p) {
			return
		}
		var c utf8Carry
		got := string(c.text(p[:cut])) + string(c.text(p[cut:])) + c.flush()
		if got != toValidUTF8(string(p)) {
			t.Fatalf("split at %d: %q, want %q", cut, got, toValidUTF8(string(p)))
		}
	})
}
