// Package recording writes terminal sessions as asciinema v2 casts
// (https://docs.asciinema.org/manual/asciicast/v2/), one file per session
// in one directory, with a size limit per recording and an age limit after
// which recordings are deleted. Recording never makes a session wait for
// the disk. What the terminal showed is recorded; what was typed is
// recorded only on request, and then only as far as the terminal showed
// it (see echoGate): a password typed at a prompt with echo off never
// reaches a cast.
package recording

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// Config says where recordings go and how long they are kept.
type Config struct {
	// Path is an existing directory podgate can write.
	Path string
	// MaxBytes bounds one recording unless the profile sets its own
	// limit; the cast ends with a marker when it is reached.
	MaxBytes int64
	// MaxAge is how long a finished recording is kept; zero keeps them.
	MaxAge time.Duration
}

// castSuffix ends every recording's file name; the age sweep touches no
// other file.
const castSuffix = ".cast"

// Dir is the recording directory.
type Dir struct {
	cfg     Config
	clock   clock.WithTicker
	log     *slog.Logger
	metrics *metrics
}

// NewDir checks that cfg.Path is a directory podgate can create files in,
// so that a bad setting stops podgate at start-up rather than at the
// first session.
func NewDir(cfg Config, clk clock.WithTicker, log *slog.Logger, reg prometheus.Registerer) (*Dir, error) {
	if cfg.MaxBytes <= 0 {
		return nil, errors.New("recording size limit must be positive")
	}
	if err := CheckDir(cfg.Path); err != nil {
		return nil, fmt.Errorf("recording directory %s: %w", cfg.Path, err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Dir{cfg: cfg, clock: clk, log: log, metrics: m}, nil
}

// CheckDir reports why path cannot hold recordings: it must be an
// existing directory in which podgate can create (and remove) a file.
func CheckDir(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return errors.New("not a directory")
	}
	probe, err := os.CreateTemp(path, ".podgate-write-check-*")
	if err != nil {
		return fmt.Errorf("not writable: %w", err)
	}
	probe.Close()
	if err := os.Remove(probe.Name()); err != nil {
		return fmt.Errorf("removing the write check: %w", err)
	}
	return nil
}

// Meta describes the session a recording is for.
type Meta struct {
	ConnID  string
	Session int
	User    string
	Profile string
	Start   time.Time
	// Term, Cols and Rows are the terminal the client asked for.
	Term       string
	Cols, Rows uint16
	// Command is what runs: the shell, or the exec request's command.
	Command string
	// Input records typed keys too (see echoGate).
	Input bool
	// MaxBytes, when positive, replaces the directory's size limit.
	MaxBytes int64
}

// Start creates the session's cast file and writes its header.
func (d *Dir) Start(m Meta) (*Session, error) {
	name := fmt.Sprintf("%s-%s-%d%s", m.Start.UTC().Format("20060102T150405Z"), m.ConnID, m.Session, castSuffix)
	path := filepath.Join(d.cfg.Path, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating recording: %w", err)
	}
	limit := d.cfg.MaxBytes
	if m.MaxBytes > 0 {
		limit = m.MaxBytes
	}
	s := &Session{path: path, input: m.Input, start: d.clock.Now(), clock: d.clock, dir: d,
		spool: newSpool(f, limit)}
	header := headerLine(castHeader{
		Width: int(m.Cols), Height: int(m.Rows), Timestamp: m.Start.Unix(),
		Command: m.Command, Title: fmt.Sprintf("%s@%s (podgate %s #%d)", m.User, m.Profile, m.ConnID, m.Session),
		Env: map[string]string{"TERM": m.Term},
	})
	if s.spool.append(header) != appended {
		_, _ = s.spool.close()
		return nil, fmt.Errorf("recording %s: size limit %d is smaller than the header", path, limit)
	}
	d.metrics.started.Inc()
	return s, nil
}

// finished counts a closed recording.
func (d *Dir) finished(s Summary, err error) {
	d.metrics.bytes.Add(float64(s.Bytes))
	if s.Truncated {
		d.metrics.truncated.Inc()
	}
	if err != nil {
		d.metrics.failed.Inc()
		d.log.Error("session recording incomplete", "file", s.Path, "err", err)
	}
}

// Run deletes recordings older than MaxAge until ctx ends: once at once,
// then every tenth of MaxAge (between a minute and an hour).
func (d *Dir) Run(ctx context.Context) error {
	if d.cfg.MaxAge <= 0 {
		<-ctx.Done()
		return nil
	}
	every := min(max(d.cfg.MaxAge/10, time.Minute), time.Hour)
	t := d.clock.NewTicker(every)
	defer t.Stop()
	for {
		d.sweep()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
	}
}

// sweep removes the recordings last written before now minus MaxAge. A
// recording still being written has a recent modification time and stays.
func (d *Dir) sweep() {
	entries, err := os.ReadDir(d.cfg.Path)
	if err != nil {
		d.log.Error("listing recordings", "dir", d.cfg.Path, "err", err)
		return
	}
	cutoff := d.clock.Now().Add(-d.cfg.MaxAge)
	removed := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), castSuffix) {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			continue
		}
		if err := os.Remove(filepath.Join(d.cfg.Path, e.Name())); err != nil {
			d.log.Warn("removing an old recording", "file", e.Name(), "err", err)
			continue
		}
		removed++
	}
	if removed > 0 {
		d.metrics.removed.Add(float64(removed))
		d.log.Info("removed old recordings", "dir", d.cfg.Path, "count", removed, "older_than", d.cfg.MaxAge)
	}
}

// metrics are the recording counters.
type metrics struct {
	started, truncated, failed, removed prometheus.Counter
	bytes, lost                         prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "podgate_recording_" + name, Help: help})
	}
	m := &metrics{
		started:   c("sessions_total", "Terminal sessions whose recording started."),
		truncated: c("truncated_total", "Recordings stopped by their size limit."),
		failed:    c("failed_total", "Recordings that could not be written completely."),
		removed:   c("removed_total", "Recordings deleted for their age."),
		bytes:     c("written_bytes_total", "Bytes of cast files written."),
		lost:      c("lost_bytes_total", "Bytes of events dropped because the disk did not keep up."),
	}
	for _, col := range []prometheus.Collector{m.started, m.truncated, m.failed, m.removed, m.bytes, m.lost} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("registering recording metrics: %w", err)
		}
	}
	return m, nil
}
