package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Progress draws a one-line progress bar on a terminal: the overall share
// of work done, the current step and its own count. On something that is
// not a terminal (a log file) it prints a plain line per step instead, so
// logs stay readable.
type Progress struct {
	mu    sync.Mutex // protects the fields below
	w     io.Writer
	tty   bool
	start time.Time
	// total and done are in work units (connections, seconds, ...) over
	// the whole run, summed from every scenario's estimate.
	total, done float64
	step        string
	n, of       int
	lastDraw    time.Time
}

// NewProgress writes to w; tty selects the redrawn bar.
func NewProgress(w io.Writer, tty bool, total float64) *Progress {
	return &Progress{w: w, tty: tty, total: total, start: time.Now()}
}

// Step starts a named step of of items.
func (p *Progress) Step(name string, of int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.step, p.n, p.of = name, 0, of
	if !p.tty {
		fmt.Fprintf(p.w, "[%s] %3.0f%% %s\n", p.elapsed(), p.pct(), name)
		return
	}
	p.drawLocked(true)
}

// Add counts n items of the current step, worth units of overall work.
func (p *Progress) Add(n int, units float64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += n
	p.done += units
	if p.tty {
		p.drawLocked(false)
	}
}

// Logf prints a line above the bar.
func (p *Progress) Logf(format string, args ...any) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "[%s] "+format+"\n", append([]any{p.elapsed()}, args...)...)
	if p.tty {
		p.drawLocked(true)
	}
}

// Done ends the bar.
func (p *Progress) Done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = p.total
	if p.tty {
		p.drawLocked(true)
		fmt.Fprintln(p.w)
	}
}

func (p *Progress) elapsed() string { return time.Since(p.start).Round(time.Second).String() }

func (p *Progress) pct() float64 {
	if p.total <= 0 {
		return 0
	}
	return min(100, 100*p.done/p.total)
}

// drawLocked redraws at most ten times a second unless forced.
func (p *Progress) drawLocked(force bool) {
	now := time.Now()
	if !force && now.Sub(p.lastDraw) < 100*time.Millisecond {
		return
	}
	p.lastDraw = now
	const width = 30
	fill := int(p.pct() / 100 * width)
	count := ""
	if p.of > 0 {
		count = fmt.Sprintf(" %d/%d", p.n, p.of)
	}
	fmt.Fprintf(p.w, "\r\033[K[%s%s] %3.0f%% %s %s%s", strings.Repeat("#", fill), strings.Repeat(".", width-fill),
		p.pct(), p.elapsed(), p.step, count)
}
