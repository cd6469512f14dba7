package bench

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Results is everything one `make bench` measured.
type Results struct {
	Meta      Meta
	Config    Config
	Warm      Run
	WarmSh    Run // the warm run with /bin/sh as login shell
	WarmBusy  Run // the warm run that does not wait for the pool to settle
	Cold      Run
	Sweep     []Run
	Sustained Sustained
	Memory    Memory
	Transfers []Transfer
	Recording []RecordingRun
	Reserved  Reserved
	// Failures lists scenarios that could not run, with the reason.
	Failures []string
}

// Meta says where and on what the run happened.
type Meta struct {
	Date          time.Time
	Commit        string
	ServerVersion string
	Nodes         []string
	CPUs          int
	CPUModel      string
	MemTotal      string
	Kubeconfig    string
	Duration      time.Duration
	// LoadStart and LoadEnd are /proc/loadavg at the start and the end:
	// other work on the machine shows here.
	LoadStart, LoadEnd string
}

// LoadAvg is the first three fields of /proc/loadavg.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// CollectMeta reads the machine, cluster and commit.
func CollectMeta(ctx context.Context, kube kubernetes.Interface, kubeconfig string) Meta {
	m := Meta{Date: time.Now(), CPUs: runtime.NumCPU(), Kubeconfig: kubeconfig, LoadStart: LoadAvg()}
	if out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			m.Commit += " (work tree has uncommitted changes)"
		}
	}
	if v, err := kube.Discovery().ServerVersion(); err == nil {
		m.ServerVersion = v.GitVersion + " (" + v.Platform + ")"
	}
	if nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
		for _, n := range nodes.Items {
			i := n.Status.NodeInfo
			m.Nodes = append(m.Nodes, fmt.Sprintf("%s: kubelet %s, %s, %s, %s CPU, %s memory, %s pods", n.Name, i.KubeletVersion,
				i.OSImage, i.ContainerRuntimeVersion, n.Status.Capacity.Cpu(), n.Status.Capacity.Memory(), n.Status.Capacity.Pods()))
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemTotal = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return m
}

// AllSamples is every connection of the run, for the CSV.
func (r *Results) AllSamples() []Sample {
	var out []Sample
	for _, run := range []Run{r.Warm, r.WarmSh, r.WarmBusy, r.Cold, r.Reserved.Burst} {
		out = append(out, run.Samples...)
	}
	for _, s := range r.Sweep {
		out = append(out, s.Samples...)
	}
	return append(out, r.Sustained.Samples...)
}

// WriteCSV writes one row per connection, times in milliseconds from the
// start of the TCP connect (echo: its own round trip; start: from the start
// of the run).
func (r *Results) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"scenario", "label", "index", "start_ms", "connect_ms", "handshake_ms", "auth_ms", "prompt_ms", "echo_ms", "miss", "error"})
	f := func(d time.Duration) string { return strconv.FormatFloat(ms(d), 'f', 3, 64) }
	for _, s := range r.AllSamples() {
		_ = cw.Write([]string{s.Scenario, s.Label, strconv.Itoa(s.Index), f(s.Start), f(s.Connect), f(s.Handshake),
			f(s.Auth), f(s.Prompt), f(s.Echo), strconv.FormatBool(s.Miss), s.Err})
	}
	cw.Flush()
	return cw.Error()
}
