package bench

import (
	"cmp"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CPU accounting for a burst: which processes on this machine used the CPU
// while it ran. On a machine that hosts the whole cluster, this is what
// bounds a burst's latency once nothing waits on a rate limiter.

// clockTick is the kernel's USER_HZ, the unit of /proc/PID/stat times. It
// is 100 on every Linux architecture Go supports.
const clockTick = 100

// CPUUse is the CPU time processes of one name used during a window.
type CPUUse struct {
	Name    string
	Seconds float64
}

// procCPU is one process's CPU time and start, from /proc/PID/stat.
type procCPU struct {
	name  string
	ticks uint64 // utime + stime
	start uint64 // starttime, in ticks since boot
}

// cpuSnapshot reads every process's CPU time. Processes that vanish while
// it reads are skipped.
func cpuSnapshot() (map[int]procCPU, uint64) {
	out := map[int]procCPU{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if p, ok := parseStat(string(b)); ok {
			out[pid] = p
		}
	}
	return out, uptimeTicks()
}

// parseStat reads the command name, utime, stime and starttime of a
// /proc/PID/stat line. The name is in parentheses and may hold spaces or
// parentheses itself, so fields are counted from the last ")".
func parseStat(s string) (procCPU, bool) {
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open || closing+2 > len(s) {
		return procCPU{}, false
	}
	f := strings.Fields(s[closing+2:])
	// f[0] is field 3 (state); utime, stime and starttime are fields
	// 14, 15 and 22.
	if len(f) < 20 {
		return procCPU{}, false
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	start, err3 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procCPU{}, false
	}
	return procCPU{name: s[open+1 : closing], ticks: ut + st, start: start}, true
}

// uptimeTicks is the time since boot in clock ticks, for telling processes
// started after a snapshot from those that were already there.
func uptimeTicks() uint64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	secs, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return uint64(secs * clockTick)
}

// cpuDelta sums, per process name, the CPU time used between two
// snapshots, largest first. A process is matched by PID, not name (kernel
// workers rename themselves); one started after the first snapshot counts
// in full. Processes that both started and ended between the snapshots
// are missed, as are kernel threads, whose names do not say what work
// they did for whom.
func cpuDelta(before map[int]procCPU, beforeAt uint64, after map[int]procCPU) []CPUUse {
	sum := map[string]uint64{}
	for pid, a := range after {
		if strings.HasPrefix(a.name, "kworker") || strings.HasPrefix(a.name, "ksoftirqd") {
			continue
		}
		if b, ok := before[pid]; ok && b.start == a.start {
			if a.ticks > b.ticks {
				sum[a.name] += a.ticks - b.ticks
			}
		} else if a.start >= beforeAt {
			sum[a.name] += a.ticks
		}
	}
	out := make([]CPUUse, 0, len(sum))
	for name, t := range sum {
		if t > 0 {
			out = append(out, CPUUse{Name: name, Seconds: float64(t) / clockTick})
		}
	}
	slices.SortFunc(out, func(x, y CPUUse) int {
		return cmp.Or(cmp.Compare(y.Seconds, x.Seconds), cmp.Compare(x.Name, y.Name))
	})
	return out
}

// cpuWindow measures the CPU use of every process while fn runs.
func cpuWindow(fn func()) ([]CPUUse, time.Duration) {
	before, at := cpuSnapshot()
	t0 := time.Now()
	fn()
	wall := time.Since(t0)
	after, _ := cpuSnapshot()
	return cpuDelta(before, at, after), wall
}
