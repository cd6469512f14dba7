package pool

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/scheduler"
)

// levels is what one look at a profile's live (not deleting) pods shows.
type levels struct {
	ready    int // idle and Ready: what a claim can take
	unused   int // idle, Ready or still starting: what the leader has made
	claimed  int
	total    int
	sampleAt time.Time
}

func levelsOf(pods []*corev1.Pod, prof string) levels {
	var l levels
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Labels[LabelProfile] != prof {
			continue
		}
		l.total++
		switch p.Labels[LabelState] {
		case StateIdle, StateReserved:
			l.unused++
			if podReady(p) {
				l.ready++
			}
		case StateClaimed:
			l.claimed++
		}
	}
	return l
}

// levelRecorder samples a profile's pod levels at every event of its own
// pod informer, so no change between two samples goes unseen, and keeps
// the extremes and the first sample outside the allowed band.
type levelRecorder struct {
	store cache.Store
	prof  string

	// mu protects the following.
	mu      sync.Mutex
	armed   bool
	samples int
	minIdle int
	maxIdle int
	maxUsed int // most idle pods, Ready or starting
	maxAll  int
	bad     []string // samples outside the band, at most a few
	lo, hi  int      // band for ready (lo) and unused (hi) idle pods
	max     int      // most pods of the profile at once
	last    levels
	changed chan struct{}
}

func recordLevels(t *testing.T, env *kubetest.Env, prof string) *levelRecorder {
	t.Helper()
	var r *levelRecorder
	informManagedPods(t, env, "level recorder", func(store cache.Store) func() {
		r = &levelRecorder{store: store, prof: prof, changed: make(chan struct{}, 1)}
		return r.sample
	})
	return r
}

func (r *levelRecorder) sample() {
	var pods []*corev1.Pod
	for _, o := range r.store.List() {
		pods = append(pods, o.(*corev1.Pod))
	}
	l := levelsOf(pods, r.prof)
	l.sampleAt = time.Now()
	r.mu.Lock()
	r.last = l
	if r.armed {
		r.samples++
		r.minIdle, r.maxIdle = min(r.minIdle, l.ready), max(r.maxIdle, l.ready)
		r.maxUsed, r.maxAll = max(r.maxUsed, l.unused), max(r.maxAll, l.total)
		if (l.ready < r.lo || l.unused > r.hi || l.total > r.max) && len(r.bad) < 5 {
			r.bad = append(r.bad, fmt.Sprintf("%s: %d idle Ready, %d idle in all, %d claimed, %d pods",
				l.sampleAt.Format("15:04:05.000"), l.ready, l.unused, l.claimed, l.total))
		}
	}
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// arm starts judging samples against the band [lo, hi] and the pod limit.
func (r *levelRecorder) arm(lo, hi, limit int) {
	r.mu.Lock()
	r.armed, r.lo, r.hi, r.max = true, lo, hi, limit
	r.minIdle, r.maxIdle = r.last.ready, r.last.ready
	r.mu.Unlock()
	r.sample()
}

func (r *levelRecorder) now() levels {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// waitFor waits, on informer events, until cond holds for the latest
// levels; limit only guards against a hang.
func (r *levelRecorder) waitFor(t *testing.T, limit time.Duration, what string, cond func(levels) bool) {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for !cond(r.now()) {
		select {
		case <-r.changed:
		case <-deadline.C:
			t.Fatalf("gave up after %s waiting for %s; last levels %+v", limit, what, r.now())
		}
	}
}

// TestIntegrationTwoReplicasSteadyTarget runs two replicas of one pool for a
// minute while users claim and release pods at a modest rate through both.
// Every pod event is sampled: after the initial fill, the idle Ready count
// must stay within target-1, the idle count (Ready or starting) within
// target+1, and the profile's pods never above the pool max.
func TestIntegrationTwoReplicasSteadyTarget(t *testing.T) {
	const (
		target   = 4
		poolMax  = 8
		held     = 3 // claims held at once, so target+1+held <= poolMax
		run      = 60 * time.Second
		interval = 3 * time.Second
	)
	env := kubetest.New(t)
	rec := recordLevels(t, env, "default")
	prof := func() *profile.Profile {
		p, err := profile.FromConfig(profile.DefaultProfileConfig{
			Name: "default", Image: kubetest.BusyboxImage, PoolMin: target, PoolMax: poolMax,
			CPURequest: "1m", MemRequest: "8Mi", MaxWait: 2 * time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := startReplica(t, env, "ra", prof(), fastOptions(env.Namespace, "ra"), nil)
	b := startReplica(t, env, "rb", prof(), fastOptions(env.Namespace, "rb"), nil)
	rec.waitFor(t, 2*time.Minute, "the initial fill", func(l levels) bool { return l.ready == target && l.unused == target })
	rec.arm(target-1, target+1, poolMax)

	ctx, cancel := context.WithTimeout(context.Background(), run+30*time.Second)
	defer cancel()
	type holding struct {
		pod *scheduler.Pod
		r   *replica
	}
	var (
		holds            []holding
		claims, releases int
		skipped          int
	)
	release := func(h holding) {
		if err := h.r.pool.Release(ctx, h.pod); err != nil {
			t.Errorf("Release %s: %v", h.pod.Ref.Name, err)
		}
		releases++
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	end := time.After(run)
loop:
	for n := 0; ; n++ {
		select {
		case <-end:
			break loop
		case <-tick.C:
		}
		// A modest rate: claim only once the previous claim has been
		// replaced, so that the band tests the pool, not the node's
		// pod start-up time.
		if rec.now().ready < target {
			skipped++
			continue
		}
		if len(holds) == held {
			release(holds[0])
			holds = holds[1:]
		}
		r := []*replica{a, b}[n%2]
		pod, err := r.pool.Claim(ctx, "", claimFor(fmt.Sprint("user-", n), fmt.Sprint("s-", n)))
		if err != nil {
			t.Errorf("claim %d on %s with the pool full: %v", n, r.pool.opts.ReplicaID, err)
			continue
		}
		claims++
		holds = append(holds, holding{pod, r})
	}
	rec.mu.Lock()
	samples, lo, hi, used, all, bad := rec.samples, rec.minIdle, rec.maxIdle, rec.maxUsed, rec.maxAll, rec.bad
	rec.mu.Unlock()
	t.Logf("%s, %d claims, %d releases, %d ticks skipped while refilling, %d samples: idle Ready min %d max %d (target %d), idle in all max %d, pods max %d (pool max %d)",
		run, claims, releases, skipped, samples, lo, hi, target, used, all, poolMax)
	for _, s := range bad {
		t.Errorf("outside target %d±1 or above pool max %d at %s", target, poolMax, s)
	}
	if claims < 5 {
		t.Errorf("only %d claims in %s: the pool did not keep up, so the run proves little", claims, run)
	}
	for _, h := range holds {
		release(h)
	}
}
