package localcluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// daemonNames are the executables the harness starts, directly or through
// containerd. A leftover process is one of these whose command line names
// the state directory.
var daemonNames = map[string]bool{
	"etcd": true, "kube-apiserver": true, "kube-controller-manager": true,
	"kube-scheduler": true, "kube-proxy": true, "kubelet": true, "kube-router": true, "kwok": true,
	"containerd": true, "containerd-shim-runc-v2": true,
	// A supervisor whose daemons were killed under it.
	"localcluster": true,
}

// Leftovers is what a cleanup found and removed.
type Leftovers struct {
	Processes, PodProcesses, Mounts, Cgroups, Chains, IPSets int
	Bridge                                                   bool
}

func (l Leftovers) String() string {
	return fmt.Sprintf("%d daemons, %d pod processes, %d mounts, %d cgroups, %d iptables chains, %d ipsets, bridge=%v",
		l.Processes, l.PodProcesses, l.Mounts, l.Cgroups, l.Chains, l.IPSets, l.Bridge)
}

// Empty reports whether nothing was left behind.
func (l Leftovers) Empty() bool { return l == Leftovers{} }

// cleanup removes everything a cluster in o.StateDir may have left: pod
// processes and their cgroups, daemons, mounts under the state directory,
// the bridge, CNI and KUBE iptables chains, the CNI address allocations,
// and the directory itself. It is safe to run when nothing is there, and it
// never touches processes or mounts outside what this harness creates.
func (o Options) cleanup(removeState bool) (Leftovers, error) {
	var l Leftovers
	var errs []error
	l.PodProcesses = killCgroupTasks()
	l.Processes = o.killDaemons()
	// KWOK's execs: processes of fake pods, in KWOK's cgroup.
	l.PodProcesses += killKWOKCgroup()
	// Pod processes may have been restarted by a shim that was still alive
	// during the first pass.
	l.PodProcesses += killCgroupTasks()
	n, err := o.unmountAll()
	l.Mounts = n
	errs = append(errs, err)
	l.Cgroups = removeCgroups()
	l.Bridge = deleteLink(bridgeName)
	// Every pod is dead now, so every address allocation is stale: the
	// kubelet's CNI DEL for them would find nothing to free anyway.
	for _, dir := range []string{o.ipamDir(), legacyIPAMDir} {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("removing stale IP allocations: %w", err))
		}
	}
	c, err := cleanIptables()
	l.Chains = c
	errs = append(errs, err)
	// After the rules: a set that a rule still references cannot go.
	n, err = destroyIPSets()
	l.IPSets = n
	errs = append(errs, err)
	if removeState {
		if err := os.RemoveAll(o.StateDir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", o.StateDir, err))
		}
		errs = append(errs, o.removeKWOKHome())
	}
	return l, errors.Join(errs...)
}

// killDaemons SIGKILLs every harness daemon whose command line names the
// state directory, and waits until they are gone (zombies count as gone).
func (o Options) killDaemons() int {
	var pids []int
	self, parent := os.Getpid(), os.Getppid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || pid == parent {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if !daemonNames[filepath.Base(args[0])] || !bytes.Contains(cmdline, []byte(o.StateDir)) {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			pids = append(pids, pid)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return len(pids)
}

// cgroupRoots lists the kubepods directories of every cgroup v1 hierarchy
// (and the unified one, should a kubelet ever use it).
func cgroupRoots() []string {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	if _, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil {
		roots = append(roots, "/sys/fs/cgroup/kubepods")
	}
	return roots
}

// killCgroupTasks SIGKILLs every process in the kubepods cgroups: these are
// the containers' processes, which outlive the kubelet and the shims.
func killCgroupTasks() int {
	seen := map[int]bool{}
	for _, root := range cgroupRoots() {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for pid := range seen {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return len(seen)
}

// removeCgroups removes the kubepods cgroup trees, deepest first.
func removeCgroups() int {
	n := 0
	for _, root := range cgroupRoots() {
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			for try := 0; try < 50; try++ {
				err := syscall.Rmdir(d)
				if err == nil {
					n++
					break
				}
				if !errors.Is(err, syscall.EBUSY) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	return n
}

// unmountAll detaches every mount at or below the state directory, deepest
// first: container rootfs overlays, netns bind mounts, pod volumes.
func (o Options) unmountAll() (int, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var points []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == o.StateDir || strings.HasPrefix(mp, o.StateDir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", p, err))
		}
	}
	return len(points), errors.Join(errs...)
}

// unescapeMount decodes the octal escapes mountinfo uses for spaces etc.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func deleteLink(name string) bool {
	if _, err := os.Stat("/sys/class/net/" + name); err != nil {
		return false
	}
	return exec.Command("ip", "link", "delete", name).Run() == nil
}

// cleanIptables removes the CNI- and KUBE- chains, and every rule that jumps
// to them, from each table, leaving everything else as it was. It rewrites a
// table with iptables-save / iptables-restore so that rules with quoted
// comments survive intact.
func cleanIptables() (int, error) {
	total := 0
	var errs []error
	for _, bin := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(bin + "-save"); err != nil {
			continue
		}
		for _, table := range []string{"filter", "nat", "mangle"} {
			out, err := exec.Command(bin+"-save", "-t", table).Output()
			if err != nil {
				continue
			}
			kept, removed := filterRules(string(out))
			if removed == 0 {
				continue
			}
			cmd := exec.Command(bin+"-restore", "-w")
			cmd.Stdin = strings.NewReader(kept)
			if b, err := cmd.CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("%s-restore -t %s: %v: %s", bin, table, err, b))
				continue
			}
			total += removed
		}
	}
	return total, errors.Join(errs...)
}

// ours reports whether a chain belongs to the cluster (CNI plugins or
// kubelet/kube-proxy).
func ours(chain string) bool {
	return strings.HasPrefix(chain, "CNI-") || strings.HasPrefix(chain, "KUBE-")
}

// filterRules drops our chains' declarations and every rule in or to them
// from an iptables-save dump, and counts the chains dropped.
func filterRules(dump string) (string, int) {
	var b strings.Builder
	removed := 0
	for _, line := range strings.Split(dump, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && strings.HasPrefix(f[0], ":") && ours(strings.TrimPrefix(f[0], ":")):
			removed++
			continue
		case len(f) > 1 && f[0] == "-A" && ours(f[1]):
			continue
		case len(f) > 1 && f[0] == "-A" && jumpsToOurs(f):
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String(), removed
}

func jumpsToOurs(f []string) bool {
	for i := 0; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g") && ours(f[i+1]) {
			return true
		}
	}
	return false
}

// ourSet reports whether an ipset belongs to the cluster: kube-router's
// network policy controller names its sets KUBE-SRC-*, KUBE-DST-* and
// kube-router-*, with an "inet6:" prefix for IPv6.
func ourSet(name string) bool {
	name = strings.TrimPrefix(name, "inet6:")
	return strings.HasPrefix(name, "KUBE-") || strings.HasPrefix(name, "kube-router")
}

// destroyIPSets destroys the cluster's ipsets, leaving others alone. A
// machine without the ipset tool has none to destroy.
func destroyIPSets() (int, error) {
	if _, err := exec.LookPath("ipset"); err != nil {
		return 0, nil
	}
	out, err := exec.Command("ipset", "list", "-n").Output()
	if err != nil {
		return 0, fmt.Errorf("listing ipsets: %w", err)
	}
	n := 0
	var errs []error
	for _, name := range strings.Fields(string(out)) {
		if !ourSet(name) {
			continue
		}
		if b, err := exec.Command("ipset", "destroy", name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ipset destroy %s: %v: %s", name, err, b))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
