package localcluster

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// daemons is the supervisor's table of the cluster's daemons in start
// order. A daemon that a control request stopped keeps its (exited) entry
// until it is started again.
type daemons struct {
	mu     sync.Mutex // protects order, byName and timers
	order  []string
	byName map[string]*proc
	// timers restart deliberately stopped daemons after their MAXDOWN.
	timers map[string]*time.Timer
	// op serialises stop and start, from requests and timers alike, so
	// that two of them never act on one daemon at once.
	op sync.Mutex
}

func newDaemons() *daemons {
	return &daemons{byName: map[string]*proc{}, timers: map[string]*time.Timer{}}
}

// add records a started daemon, replacing an earlier process of the same
// name.
func (d *daemons) add(p *proc) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.byName[p.name]; !ok {
		d.order = append(d.order, p.name)
	}
	d.byName[p.name] = p
}

// list returns the current processes in start order.
func (d *daemons) list() []*proc {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*proc, 0, len(d.order))
	for _, n := range d.order {
		out = append(out, d.byName[n])
	}
	return out
}

func (d *daemons) get(name string) *proc {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.byName[name]
}

// setTimer replaces the auto-restart timer of name (nil clears it).
func (d *daemons) setTimer(name string, t *time.Timer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if old := d.timers[name]; old != nil {
		old.Stop()
	}
	if t == nil {
		delete(d.timers, name)
		return
	}
	d.timers[name] = t
}

// stopTimers cancels every pending auto-restart, at shutdown.
func (d *daemons) stopTimers() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for n, t := range d.timers {
		t.Stop()
		delete(d.timers, n)
	}
}

// track logs a daemon that exits without having been asked to.
func (o Options) track(ctx context.Context, p *proc) {
	go func() {
		select {
		case <-p.done:
			if !p.deliberate.Load() && ctx.Err() == nil {
				o.Log.Warn("daemon exited", "name", p.name, "err", p.err)
			}
		case <-ctx.Done():
		}
	}()
}

// serveControl answers control requests on the state directory's socket
// until ctx ends, one request at a time. It returns once no request is in
// progress, so the caller may then stop every daemon.
func (o Options) serveControl(ctx context.Context, d *daemons, comps map[string]component) error {
	path := o.controlPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listening on the control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return err
	}
	defer os.Remove(path)
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				// Taking op waits for a timer's restart in progress;
				// later ones see ctx's end and do nothing.
				d.op.Lock()
				d.stopTimers()
				d.op.Unlock()
				return nil
			}
			return fmt.Errorf("accepting on the control socket: %w", err)
		}
		o.handleControl(ctx, c, d, comps)
	}
}

func (o Options) handleControl(ctx context.Context, c net.Conn, d *daemons, comps map[string]component) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	answer := "ok"
	r, err := parseRequest(line)
	if err == nil {
		o.Log.Info("control request", "request", r.String())
		switch r.verb {
		case "stop":
			err = o.stopDaemon(ctx, d, comps, r.name, r.maxDown)
		case "start":
			err = o.startDaemon(ctx, d, comps, r.name)
		case "remove":
			err = o.removeDaemon(d, r.name)
		}
	}
	if err != nil {
		o.Log.Warn("control request failed", "request", strings.TrimSpace(line), "err", err)
		answer = "error: " + strings.ReplaceAll(err.Error(), "\n", " ")
	}
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintln(c, answer)
}

// stopDaemon stops name on purpose and arms its auto-restart.
func (o Options) stopDaemon(ctx context.Context, d *daemons, comps map[string]component, name string, maxDown time.Duration) error {
	d.op.Lock()
	defer d.op.Unlock()
	p := d.get(name)
	if p == nil {
		return fmt.Errorf("%s is not part of this cluster", name)
	}
	if maxDown <= 0 {
		maxDown = DefaultMaxDown
	}
	p.deliberate.Store(true)
	p.stop(10 * time.Second)
	d.setTimer(name, time.AfterFunc(maxDown, func() {
		if ctx.Err() != nil {
			return
		}
		o.Log.Warn("restarting a stopped daemon: its maximum down time passed", "name", name, "maxDown", maxDown)
		if err := o.startDaemon(ctx, d, comps, name); err != nil {
			o.Log.Warn("restarting a stopped daemon", "name", name, "err", err)
		}
	}))
	o.Log.Info("daemon stopped on request", "name", name, "maxDown", maxDown)
	return nil
}

// removeDaemon stops an optional daemon with no restart; removing one that
// is not running succeeds.
func (o Options) removeDaemon(d *daemons, name string) error {
	d.op.Lock()
	defer d.op.Unlock()
	d.setTimer(name, nil)
	p := d.get(name)
	if p == nil {
		return nil
	}
	p.deliberate.Store(true)
	p.stop(10 * time.Second)
	o.Log.Info("optional daemon removed on request", "name", name)
	return nil
}

// startDaemon starts name again with its original command line, unless it
// is running, and waits until it is ready.
func (o Options) startDaemon(ctx context.Context, d *daemons, comps map[string]component, name string) error {
	d.op.Lock()
	defer d.op.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	d.setTimer(name, nil)
	if p := d.get(name); p != nil && !p.exited() {
		return nil
	}
	c, ok := comps[name]
	if !ok {
		return fmt.Errorf("%s is not part of this cluster", name)
	}
	p, err := o.start(c)
	if p != nil {
		d.add(p)
		o.track(ctx, p)
	}
	if err != nil {
		return err
	}
	if url := controllable[name]; url != "" {
		if err := o.waitHTTP(ctx, []*proc{p}, url); err != nil {
			return fmt.Errorf("waiting for %s: %w", name, err)
		}
	}
	o.Log.Info("daemon started on request", "name", name)
	return nil
}
