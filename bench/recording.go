package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// RecordingRun is one setting of scenario 8: a terminal session's output
// throughput and keystroke round trip with session recording off, of
// output, or of output and input.
type RecordingRun struct {
	Mode string
	// Outputs are c.RecordMB of text written by the guest to a terminal
	// (raw mode, so the bytes arrive as sent), counted on arrival, once
	// per round.
	Outputs []Transfer
	// Keys are the round trips of single keystrokes through cat on a raw
	// terminal, the echo a user waits for when typing, of every round.
	Keys []time.Duration
	// CPUPerMB is the CPU time podgate itself used per MB of terminal
	// output, in milliseconds, once per round: unlike the rates, it does
	// not depend on what else the machine is doing.
	CPUPerMB []float64
	// CastBytes is the size of the recordings of one round.
	CastBytes int64
	Err       string
}

// recordingRounds is how often each setting is measured; the settings
// take turns, so that a change in the machine's load falls on all three.
const recordingRounds = 3

// recordingLine is what the guest prints in the throughput part: a line
// of plain text, as terminal output mostly is.
const recordingLine = "podgate recording benchmark: the quick brown fox jumps over the lazy dog 0123456789"

// Recording is scenario 8: with recording off, of output, and of output
// and input, one connection to a settled warm pod prints c.RecordMB of
// text to its terminal and echoes c.RecordKeys keystrokes, one at a time.
// Each setting runs its own podgate; casts go to a directory on the
// machine's disk, with a size limit far above what the run writes.
func (r *Runner) Recording(ctx context.Context, c Config) ([]RecordingRun, error) {
	ns, del, err := r.namespace(ctx, "recording")
	if err != nil {
		return nil, err
	}
	defer del()
	runs := []RecordingRun{{Mode: "off"}, {Mode: "output"}, {Mode: "input"}}
	for round := range recordingRounds {
		for i := range runs {
			run := &runs[i]
			r.Progress.Step(fmt.Sprintf("recording %s, round %d: %d MB to a terminal, %d keystrokes", run.Mode, round+1, c.RecordMB, c.RecordKeys), 1)
			if err := r.recordingRound(ctx, ns, c, run); err != nil {
				run.Err = err.Error()
				r.Progress.Logf("recording %s: %v", run.Mode, err)
			}
			r.Progress.Add(1, 1)
		}
	}
	return runs, nil
}

// recordingRound measures one setting once, with a podgate of its own.
func (r *Runner) recordingRound(ctx context.Context, ns string, c Config, run *RecordingRun) error {
	mode := run.Mode
	casts := filepath.Join(r.Work, "casts-"+mode)
	if err := os.MkdirAll(casts, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(casts)
	env := []string{"PODGATE_POOL_MIN=1", "PODGATE_POOL_MAX=3"}
	if mode != "off" {
		env = append(env, "PODGATE_RECORD="+mode, "PODGATE_RECORD_DIR="+casts, "PODGATE_RECORD_MAX_SIZE=8Gi")
	}
	pg, err := r.start(ctx, ns, "recording-"+mode, 1, env...)
	if err != nil {
		return err
	}
	err = measureRecording(ctx, r, pg, ns, c, run)
	// The casts are complete once podgate has ended the sessions.
	pg.stop()
	run.CastBytes = dirBytes(casts)
	return err
}

// measureRecording runs the two measurements on one connection.
func measureRecording(ctx context.Context, r *Runner, pg *podgate, ns string, c Config, run *RecordingRun) error {
	conn, err := pg.dialer.Dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	// As for throughput: the transfers wait for the claim's replacement
	// pod, so that they measure the stream and not a pod start.
	if err := r.waitSettled(ctx, pg, ns, 1, 1, 2*time.Minute); err != nil {
		return err
	}
	before := processTicks(pg.Cmd.Process.Pid)
	out := ttyOutput(conn, int64(c.RecordMB)*1e6)
	if after := processTicks(pg.Cmd.Process.Pid); after > before && c.RecordMB > 0 {
		run.CPUPerMB = append(run.CPUPerMB, float64(after-before)*1000/clockTick/float64(c.RecordMB))
	}
	run.Outputs = append(run.Outputs, out)
	keys, err := keystrokes(ctx, conn, c.RecordKeys)
	run.Keys = append(run.Keys, keys...)
	return err
}

// rawTerminal opens a session with a terminal and runs command on it in
// raw mode without echo, so that what the guest writes arrives unchanged.
func rawTerminal(conn *Conn, command string) (*ssh.Session, io.Writer, io.Reader, error) {
	sess, err := conn.Client.NewSession()
	if err != nil {
		return nil, nil, nil, err
	}
	stdin, err := sess.StdinPipe()
	if err == nil {
		var stdout io.Reader
		if stdout, err = sess.StdoutPipe(); err == nil {
			if err = sess.RequestPty("xterm", 50, 200, ssh.TerminalModes{ssh.ECHO: 0}); err == nil {
				if err = sess.Start("stty raw -echo && echo ready && " + command); err == nil {
					return sess, stdin, stdout, waitReady(stdout)
				}
			}
		}
	}
	sess.Close()
	return nil, nil, nil, err
}

// waitReady reads up to the guest's "ready" line.
func waitReady(stdout io.Reader) error {
	var seen []byte
	b := make([]byte, 1)
	for !strings.HasSuffix(string(seen), "ready\n") {
		if _, err := stdout.Read(b); err != nil {
			return fmt.Errorf("waiting for the terminal (saw %q): %w", seen, err)
		}
		seen = append(seen, b[0])
	}
	return nil
}

// ttyOutput times size bytes of text written by the guest to its terminal.
func ttyOutput(conn *Conn, size int64) Transfer {
	t := Transfer{Name: "terminal output", Bytes: size}
	sess, _, stdout, err := rawTerminal(conn, fmt.Sprintf("yes '%s' | head -c %d", recordingLine, size))
	if err != nil {
		t.Err = err.Error()
		return t
	}
	defer sess.Close()
	start := time.Now()
	n, err := io.Copy(io.Discard, stdout)
	t.Elapsed = time.Since(start)
	if err == nil {
		err = sess.Wait()
	}
	if err != nil {
		t.Err = err.Error()
	}
	t.Verified = n == size
	return t
}

// keystrokes times n single-byte round trips through cat on a raw
// terminal.
func keystrokes(ctx context.Context, conn *Conn, n int) ([]time.Duration, error) {
	sess, stdin, stdout, err := rawTerminal(conn, "exec cat")
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	rtts := make([]time.Duration, 0, n)
	b := make([]byte, 1)
	for i := range n {
		if ctx.Err() != nil {
			return rtts, ctx.Err()
		}
		key := []byte{'a' + byte(i%26)}
		t0 := time.Now()
		if _, err := stdin.Write(key); err != nil {
			return rtts, err
		}
		if _, err := io.ReadFull(stdout, b); err != nil || b[0] != key[0] {
			return rtts, fmt.Errorf("keystroke %d: got %q, %v", i, b, err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	return rtts, nil
}

// processTicks is a process's CPU time (user and system) in clock ticks,
// or 0 when it cannot be read.
func processTicks(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	p, _ := parseStat(string(b))
	return p.ticks
}

// dirBytes is the total size of the files in dir.
func dirBytes(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			n += info.Size()
		}
	}
	return n
}

// rates returns the MB/s of the transfers, sorted, and whether every one
// delivered its bytes.
func (r RecordingRun) rates() ([]float64, bool) {
	var mbps []float64
	ok := true
	for _, t := range r.Outputs {
		mbps = append(mbps, t.MBps())
		ok = ok && t.Verified
	}
	slices.Sort(mbps)
	return mbps, ok
}

// recordingSection prints scenario 8.
func recordingSection(b *strings.Builder, res *Results) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	c := res.Config
	p("## 8. Session recording")
	p("")
	p("One connection to a settled warm pod per setting and round, each with a podgate of its own: the guest prints %d MB of text lines to its terminal (raw mode, so the bytes arrive as sent), then echoes %d single keystrokes one at a time through `cat` (the client sends a key and waits for it to come back). With recording on, every byte is also written as an asciinema v2 cast to the machine's disk; with input, the keys go through the echo gate too. The three settings take turns, %d rounds. On a machine shared with other work the rates and round trips vary with that work; podgate's CPU time per MB (from /proc) is the cost recording adds, whatever else runs.", c.RecordMB, c.RecordKeys, recordingRounds)
	p("")
	if len(res.Recording) == 0 {
		p("Not run.")
		return
	}
	p("| recording | terminal output, median (min–max) | vs off | podgate CPU per MB of output, median | keystroke round trip p50 / p99 | cast size per round | error |")
	p("|---|---|---|---|---|---|---|")
	var offMedian float64
	for _, r := range res.Recording {
		mbps, ok := r.rates()
		out, vs := "–", "–"
		if n := len(mbps); n > 0 {
			med := mbps[n/2]
			out = fmt.Sprintf("%.1f MB/s (%.1f–%.1f)", med, mbps[0], mbps[n-1])
			if !ok {
				out += " **byte count wrong**"
			}
			if r.Mode == "off" {
				offMedian = med
			} else if offMedian > 0 {
				vs = fmt.Sprintf("%+.0f %%", 100*(med/offMedian-1))
			}
		}
		keys := slices.Clone(r.Keys)
		slices.Sort(keys)
		lat := "–"
		if len(keys) > 0 {
			lat = fmt.Sprintf("%s / %s (%d keys)", fms(Quantile(keys, 0.5)), fms(Quantile(keys, 0.99)), len(keys))
		}
		cpu := "–"
		if n := len(r.CPUPerMB); n > 0 {
			perMB := slices.Sorted(slices.Values(r.CPUPerMB))
			cpu = fmt.Sprintf("%.0f ms", perMB[n/2])
		}
		p("| %s | %s | %s | %s | %s | %.1f MB | %s |", r.Mode, out, vs, cpu, lat, float64(r.CastBytes)/1e6, r.Err)
	}
}
