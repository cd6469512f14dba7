package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podgate/podgate/internal/testenv/hosttools"
)

func TestParseRequest(t *testing.T) {
	good := map[string]request{
		"stop kube-apiserver\n":   {verb: "stop", name: "kube-apiserver"},
		"stop etcd 30s":           {verb: "stop", name: "etcd", maxDown: 30 * time.Second},
		"  start kubelet  \r\n":   {verb: "start", name: "kubelet"},
		"start kube-scheduler":    {verb: "start", name: "kube-scheduler"},
		"stop kube-proxy 1m30s\n": {verb: "stop", name: "kube-proxy", maxDown: 90 * time.Second},
	}
	for line, want := range good {
		got, err := parseRequest(line)
		if err != nil || got != want {
			t.Errorf("parseRequest(%q) = %+v, %v; want %+v", line, got, err, want)
		}
		// What the client sends parses back to the same request.
		if again, err := parseRequest(got.String()); err != nil || again != got {
			t.Errorf("round trip of %q: %+v, %v", got.String(), again, err)
		}
	}
	for _, line := range []string{
		"", "stop", "restart etcd", "stop containerd", "stop etcd -5s", "stop etcd soon",
		"start etcd 30s", "stop etcd 30s extra", "stop ../../bin/sh",
	} {
		if r, err := parseRequest(line); err == nil {
			t.Errorf("parseRequest(%q) = %+v, want an error", line, r)
		}
	}
}

func TestDaemonsTable(t *testing.T) {
	d := newDaemons()
	mk := func(name string) *proc {
		return &proc{name: name, cmd: exec.Command("true"), done: make(chan struct{})}
	}
	a, b := mk("etcd"), mk("kube-apiserver")
	d.add(a)
	d.add(b)
	a2 := mk("etcd")
	d.add(a2) // a restart keeps the start order
	got := d.list()
	if len(got) != 2 || got[0] != a2 || got[1] != b {
		t.Fatalf("list after restart = %v, want [etcd(new) kube-apiserver]", got)
	}
	fired := make(chan struct{}, 1)
	d.setTimer("etcd", time.AfterFunc(time.Hour, func() { fired <- struct{}{} }))
	d.setTimer("etcd", nil)
	d.setTimer("kube-apiserver", time.AfterFunc(time.Hour, func() { fired <- struct{}{} }))
	d.stopTimers()
	if len(d.timers) != 0 {
		t.Fatalf("timers left after stopTimers: %v", d.timers)
	}
}

func TestSplitNUL(t *testing.T) {
	if got := splitNUL([]byte("a\x00b c\x00\x00")); len(got) != 2 || got[0] != "a" || got[1] != "b c" {
		t.Errorf("splitNUL = %q", got)
	}
	if got := splitNUL(nil); got != nil {
		t.Errorf("splitNUL(nil) = %q", got)
	}
}

// fakeComponents stands in for the daemons with sleep processes; the names
// are ones without a readiness URL.
func fakeComponents() map[string]component {
	c := map[string]component{}
	for _, n := range []string{"kube-proxy", "kube-scheduler"} {
		c[n] = component{name: n, cmd: func() *exec.Cmd { return exec.Command("sleep", "1000") }}
	}
	return c
}

// testOptions is a harness in a temporary state directory, for tests that
// run fakeComponents.
func testOptions(t *testing.T) Options {
	hosttools.Require(t, "sleep")
	return Options{StateDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// waitUntil polls cond for up to 10 s: a process starting or exiting
// offers the test no event.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestControlSocket drives the supervisor's control socket with stand-in
// daemons: stop (twice), start again with the same command line, the
// automatic restart after MAXDOWN, refusal of unknown names, and cleanup
// of the socket when the supervisor ends.
func TestControlSocket(t *testing.T) {
	o := testOptions(t)
	comps := fakeComponents()
	d := newDaemons()
	ctx, cancel := context.WithCancel(context.Background())
	for _, n := range []string{"kube-scheduler", "kube-proxy"} {
		p, err := o.start(comps[n])
		if err != nil {
			t.Fatal(err)
		}
		d.add(p)
		o.track(ctx, p)
	}
	served := make(chan error, 1)
	go func() { served <- o.serveControl(ctx, d, comps) }()
	defer func() {
		cancel()
		<-served
		o.stopAll(d.list())
	}()
	waitUntil(t, "the control socket", func() bool { _, err := os.Stat(o.controlPath()); return err == nil })

	first := d.get("kube-proxy")
	if err := o.StopComponent(ctx, "kube-proxy", time.Hour, false); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if !first.exited() || !first.deliberate.Load() {
		t.Fatalf("after stop: exited %v, deliberate %v", first.exited(), first.deliberate.Load())
	}
	if d.get("kube-scheduler").exited() {
		t.Fatal("stopping kube-proxy stopped kube-scheduler")
	}
	if err := o.StopComponent(ctx, "kube-proxy", time.Hour, false); err != nil {
		t.Fatalf("stopping a stopped daemon: %v", err)
	}
	if err := o.StartComponent(ctx, "kube-proxy"); err != nil {
		t.Fatalf("start: %v", err)
	}
	second := d.get("kube-proxy")
	if second == first || second.exited() {
		t.Fatal("start did not run a new process")
	}
	if got, want := second.cmd.Args, first.cmd.Args; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("restarted with %q, want the original %q", got, want)
	}
	if pid, ok := o.livePID("kube-proxy"); !ok || pid != second.cmd.Process.Pid {
		t.Errorf("pid file names %d (alive %v), want %d", pid, ok, second.cmd.Process.Pid)
	}
	if names := d.list(); len(names) != 2 || names[0].name != "kube-scheduler" {
		t.Errorf("start order changed: %v", names)
	}
	if err := o.StartComponent(ctx, "kube-proxy"); err != nil || d.get("kube-proxy") != second {
		t.Errorf("starting a running daemon: %v, replaced %v", err, d.get("kube-proxy") != second)
	}

	// A stop with a short MAXDOWN comes back by itself.
	if err := o.StopComponent(ctx, "kube-proxy", 200*time.Millisecond, false); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the automatic restart", func() bool {
		p := d.get("kube-proxy")
		return p != second && !p.exited()
	})

	if err := o.StopComponent(ctx, "etcd-but-wrong", 0, false); err == nil {
		t.Error("an unknown component was accepted")
	}
	if err := o.control(ctx, request{verb: "stop", name: "etcd"}); err == nil || !strings.Contains(err.Error(), "not part of this cluster") {
		t.Errorf("stopping a daemon this supervisor does not run: %v", err)
	}

	cancel()
	if err := <-served; err != nil {
		t.Errorf("serveControl: %v", err)
	}
	served <- nil
	if _, err := os.Stat(o.controlPath()); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
}

// TestDirectControl stops and starts a stand-in daemon without a
// supervisor socket, as against a supervisor that predates it.
func TestDirectControl(t *testing.T) {
	o := testOptions(t)
	ctx := context.Background()
	p, err := o.start(fakeComponents()["kube-proxy"])
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop(time.Second)
	if err := o.StopComponent(ctx, "kube-proxy", 0, false); !errors.Is(err, ErrNoControl) {
		t.Fatalf("without -direct: %v, want ErrNoControl", err)
	}
	if err := o.StopComponent(ctx, "kube-proxy", 0, true); err != nil {
		t.Fatalf("direct stop: %v", err)
	}
	waitUntil(t, "the daemon to exit", p.exited)
	if err := o.StopComponent(ctx, "kube-proxy", 0, true); err != nil {
		t.Errorf("stopping a stopped daemon: %v", err)
	}
	if err := o.StartComponent(ctx, "kube-proxy"); err != nil {
		t.Fatalf("direct start: %v", err)
	}
	pid, ok := o.livePID("kube-proxy")
	if !ok || pid == p.cmd.Process.Pid {
		t.Fatalf("after start: pid %d alive %v (old %d)", pid, ok, p.cmd.Process.Pid)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if got := strings.Join(splitNUL(b), " "); got != "sleep 1000" {
		t.Errorf("restarted as %q", got)
	}
	if err := o.StartComponent(ctx, "kube-scheduler"); err == nil {
		t.Error("started a daemon that was never stopped")
	}
}
