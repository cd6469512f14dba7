package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Reserved is scenario 9's outcome (issue 19): two replicas sharing one
// pool of a profile defined as a PodTemplate, so that its size can change
// under the same two processes.
type Reserved struct {
	// Pool is the pool the footprints and the stream count are taken at.
	Pool int
	// Replicas are each replica's footprint with no pool and with Pool.
	Replicas []Footprint
	// Streams counts, on the node, the pool's pods by how many wrapper
	// processes (one per open exec stream) each holds.
	Streams map[int]int
	// Burst is a burst of BurstPool logins spread evenly over both
	// replicas, against a pool pre-warmed to BurstPool.
	Burst     Run
	BurstPool int
}

// Footprint is one replica's Go heap in use after a collection and its
// goroutines: with no pool (0), with its share of a pool of Pool reserved
// and prepared (1), and with its share of a pool of BurstPool (2); and the
// pods it prepared and held at 1 and 2.
type Footprint struct {
	Name                    string
	Heap0, Heap1, Heap2     float64
	Gor0, Gor1, Gor2        float64
	Prepared, Held, Pods    float64
	Prepared2, Held2, Pods2 float64
}

// poolProfile is the PodTemplate profile the scenario's pool belongs to.
const poolProfile = "pool"

// Reserved is scenario 9: replicas a and b start with no pool; a profile
// of c.ReservedPool pods is defined; once both replicas have prepared their
// shares, their footprints are taken and the wrapper processes counted on
// the node; then the profile grows to c.ReservedBurst and a burst of that
// many logins arrives, spread over both replicas.
func (r *Runner) Reserved(ctx context.Context, c Config) (Reserved, error) {
	out := Reserved{Pool: c.ReservedPool, BurstPool: c.ReservedBurst}
	ns, del, err := r.namespace(ctx, "reserved")
	if err != nil {
		return out, err
	}
	defer del()
	r.Progress.Step("two replicas: starting", 0)
	var pgs []*podgate
	for _, name := range []string{"a", "b"} {
		pg, err := r.start(ctx, ns, "reserved-"+name, -1, "PODGATE_POOL_MIN=0", "PODGATE_POOL_GROW=false",
			"PODGATE_REPLICA_ID="+name, fastWarm)
		if err != nil {
			return out, err
		}
		defer pg.stop()
		pg.dialer.User = benchUser + "+" + poolProfile
		pgs = append(pgs, pg)
	}
	for i, pg := range pgs {
		f := Footprint{Name: []string{"a", "b"}[i]}
		if f.Heap0, f.Gor0, err = heapAfterGC(ctx, pg); err != nil {
			return out, err
		}
		out.Replicas = append(out.Replicas, f)
	}
	r.Progress.Step(fmt.Sprintf("two replicas: a pool of %d", c.ReservedPool), 0)
	if err := r.definePool(ctx, ns, c.ReservedPool); err != nil {
		return out, err
	}
	if err := r.waitShared(ctx, pgs, ns, c.ReservedPool, 4*time.Minute); err != nil {
		return out, err
	}
	for i, pg := range pgs {
		f := &out.Replicas[i]
		if f.Heap1, f.Gor1, err = heapAfterGC(ctx, pg); err != nil {
			return out, err
		}
		m, err := pg.Scrape(ctx)
		if err != nil {
			return out, err
		}
		f.Prepared = m.Value("podgate_pool_prepared_pods")
		f.Held = m.Value("podgate_pool_reserved_held", "profile", poolProfile)
		f.Pods = float64(c.ReservedPool)
	}
	if out.Streams, err = r.streamsPerPod(ctx, ns); err != nil {
		return out, err
	}
	r.Progress.Step(fmt.Sprintf("two replicas: a pool of %d", c.ReservedBurst), 0)
	if err := r.definePool(ctx, ns, c.ReservedBurst); err != nil {
		return out, err
	}
	if err := r.waitShared(ctx, pgs, ns, c.ReservedBurst, 6*time.Minute); err != nil {
		return out, err
	}
	for i, pg := range pgs {
		f := &out.Replicas[i]
		if f.Heap2, f.Gor2, err = heapAfterGC(ctx, pg); err != nil {
			return out, err
		}
		m, err := pg.Scrape(ctx)
		if err != nil {
			return out, err
		}
		f.Prepared2 = m.Value("podgate_pool_prepared_pods")
		f.Held2 = m.Value("podgate_pool_reserved_held", "profile", poolProfile)
		f.Pods2 = float64(c.ReservedBurst)
	}
	settle(ctx, 3*time.Second)
	r.Progress.Step(fmt.Sprintf("burst of %d over two replicas", c.ReservedBurst), c.ReservedBurst)
	out.Burst, err = r.spreadBurst(ctx, pgs, c.ReservedBurst)
	return out, err
}

// definePool creates or resizes the scenario's profile to a pool of n.
func (r *Runner) definePool(ctx context.Context, ns string, n int) error {
	ann := map[string]string{
		"podgate.io/pool-min": strconv.Itoa(n), "podgate.io/pool-max": strconv.Itoa(n),
		"podgate.io/user-selectable": "true", "podgate.io/allowed-users": "*",
	}
	pts := r.Kube.CoreV1().PodTemplates(ns)
	if cur, err := pts.Get(ctx, poolProfile, metav1.GetOptions{}); err == nil {
		cur.Annotations = ann
		_, err = pts.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	}
	no := false
	pt := &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: poolProfile, Labels: map[string]string{"podgate.io/profile": poolProfile}, Annotations: ann},
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "main", Image: "localhost/podgate-debian:local", ImagePullPolicy: corev1.PullNever,
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}}}},
		}},
	}
	_, err := pts.Create(ctx, pt, metav1.CreateOptions{})
	return err
}

// waitShared waits until the profile's pool of n is full and settled as
// both replicas see it, and each holds its published share prepared.
func (r *Runner) waitShared(ctx context.Context, pgs []*podgate, ns string, n int, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		settled := true
		for _, pg := range pgs {
			m, err := pg.Scrape(ctx)
			state := func(s string) float64 { return m.Value("podgate_pool_pods", "profile", poolProfile, "state", s) }
			share := m.Value("podgate_pool_reserved_share", "profile", poolProfile)
			if err != nil || int(state("idle")) < n || state("warming") != 0 || share == 0 ||
				m.Value("podgate_pool_reserved_held", "profile", poolProfile) != share || m.Value("podgate_pool_prepared_pods") < share {
				settled = false
			}
		}
		if settled {
			pods, err := r.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err == nil && !anyDeleting(pods.Items) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a shared pool of %d: %w", n, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// spreadBurst starts n attaches at once, alternating between the replicas,
// and keeps every connection open until all are in.
func (r *Runner) spreadBurst(ctx context.Context, pgs []*podgate, n int) (Run, error) {
	run := Run{Scenario: "burst-2", Label: fmt.Sprintf("%d over 2 replicas", n)}
	conns := r.attachAtOnce(ctx, pgs, n, &run)
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return run, nil
}

// attachAtOnce starts n attaches together, the i-th through
// pgs[i%len(pgs)], and records them in run (samples, CPU during the burst,
// wall time). It returns the connections that came up, for the caller to
// keep open until its measurements are taken and then close.
func (r *Runner) attachAtOnce(ctx context.Context, pgs []*podgate, n int, run *Run) []*Conn {
	samples := make([]Sample, n)
	conns := make([]*Conn, n)
	var wg sync.WaitGroup
	gun := make(chan struct{})
	var t0 time.Time
	for i := range n {
		pg := pgs[i%len(pgs)]
		wg.Go(func() {
			<-gun
			s := Sample{Scenario: run.Scenario, Label: run.Label, Index: i, Start: time.Since(t0)}
			c, _, err := pg.dialer.Attach(ctx)
			if c != nil {
				s.Timing = c.Timing
			}
			if err != nil {
				s.Err = err.Error()
			} else {
				conns[i] = c
			}
			samples[i] = s
			r.Progress.Add(1, 1)
		})
	}
	run.CPU, run.CPUWall = cpuWindow(func() {
		t0 = time.Now()
		close(gun)
		wg.Wait()
	})
	run.Wall = time.Since(t0)
	run.Samples = samples
	return conns
}

// heapAfterGC reads podgate's Go heap in use right after a collection (its
// /debug/pprof/heap?gc=1, which podgatetest enables on loopback) and its
// goroutines.
func heapAfterGC(ctx context.Context, pg *podgate) (float64, float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+pg.MetricsPort+"/debug/pprof/heap?gc=1&debug=1", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("reading podgate's heap: %w", err)
	}
	defer resp.Body.Close()
	heap := -1.0
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 64<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapInuse = "); ok {
			heap, _ = strconv.ParseFloat(v, 64)
		}
	}
	if heap < 0 {
		return 0, 0, fmt.Errorf("no HeapInuse in podgate's heap profile")
	}
	m, err := pg.Scrape(ctx)
	if err != nil {
		return 0, 0, err
	}
	return heap, m.Value("go_goroutines"), nil
}

// streamsPerPod counts the exec wrapper processes on this machine (the
// node) in each pod of the scenario's profile: every open exec stream runs
// one ("podgate-wrapper" is its $0), and a command that started replaced
// it. It returns how many pods hold how many.
func (r *Runner) streamsPerPod(ctx context.Context, ns string) (map[int]int, error) {
	pods, err := r.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "podgate.io/profile=" + poolProfile})
	if err != nil {
		return nil, err
	}
	perUID := map[types.UID]int{}
	for _, p := range pods.Items {
		perUID[p.UID] = 0
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, path := range procs {
		cmdline, err := os.ReadFile(path)
		if err != nil || !strings.Contains(string(cmdline), "\x00podgate-wrapper\x00") {
			continue
		}
		cg, err := os.ReadFile(filepath.Join(filepath.Dir(path), "cgroup"))
		if err != nil {
			continue
		}
		for uid := range perUID {
			if podCgroup(string(cg), uid) {
				perUID[uid]++
				break
			}
		}
	}
	out := map[int]int{}
	for _, n := range perUID {
		out[n]++
	}
	return out, nil
}

// podCgroup reports whether a /proc/PID/cgroup names the pod's cgroup
// (pod<uid> under the kubelet's cgroupfs hierarchy, or its systemd form).
func podCgroup(cgroup string, uid types.UID) bool {
	u := string(uid)
	return strings.Contains(cgroup, "pod"+u) || strings.Contains(cgroup, "pod"+strings.ReplaceAll(u, "-", "_"))
}
