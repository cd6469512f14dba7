package bench

import (
	"reflect"
	"testing"
)

func TestParseStat(t *testing.T) {
	// A name with a space and a parenthesis, as comm allows.
	line := "4242 (kube (api) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 12 0 9876 1000 100 0 0"
	got, ok := parseStat(line)
	want := procCPU{name: "kube (api) x", ticks: 200, start: 9876}
	if !ok || got != want {
		t.Errorf("parseStat = %+v, %t; want %+v", got, ok, want)
	}
	for _, bad := range []string{"", "12 (x", "12 (x) S 1 2"} {
		if _, ok := parseStat(bad); ok {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}

func TestCPUDelta(t *testing.T) {
	before := map[int]procCPU{
		1: {name: "kube-apiserver", ticks: 1000, start: 10},
		2: {name: "bash", ticks: 5, start: 500},
		3: {name: "kworker/0:1-events", ticks: 1, start: 20},
		4: {name: "old", ticks: 50, start: 30},
	}
	after := map[int]procCPU{
		1: {name: "kube-apiserver", ticks: 1090, start: 10},
		2: {name: "bash", ticks: 15, start: 500},
		// A new bash started after the first snapshot counts in full.
		5: {name: "bash", ticks: 12, start: 1200},
		// A kernel worker renamed itself: skipped, whatever its times.
		3: {name: "kworker/0:1H-kblockd", ticks: 3000, start: 20},
		// PID 4 was reused by a process that predates nothing: it
		// started after the snapshot, so it counts in full.
		4: {name: "id", ticks: 2, start: 1100},
		// A process older than the snapshot yet unseen in it (it was
		// being created while /proc was read) is left out, not counted
		// with its whole life.
		6: {name: "containerd", ticks: 777, start: 40},
	}
	got := cpuDelta(before, 1000, after)
	want := []CPUUse{{"kube-apiserver", 0.9}, {"bash", 0.22}, {"id", 0.02}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("cpuDelta = %v, want %v", got, want)
	}
}
