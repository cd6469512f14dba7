package localcluster

import (
	"os/exec"
	"testing"
	"time"
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
