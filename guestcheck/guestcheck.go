// Package guestcheck is podgate's sandbox self-check. When the first pod of
// a profile's current template turns Ready, it runs one small script inside
// that pod, as the guest user, and reports what a user there would find:
// whether a PID and a memory limit apply, whether a ServiceAccount token is
// mounted, whether it runs as root, and whether the API server and the
// node's kubelet answer a TCP connect. podgate cannot set some of these on
// a cluster it does not run (the kubelet's PID limit, NetworkPolicy
// enforcement), so the check is how an operator learns they are missing.
//
// Results are the gauge podgate_guest_check{profile,check} (1 pass, 0
// fail) and one warning log line per failed check. They never affect
// readiness: a weak sandbox is the operator's to fix, not a reason to stop
// serving.
//
// The shape is sample-controller's: handlers on the shared pod informer
// only enqueue pod keys; one worker reads the pod from the cache and runs
// the exec.
package guestcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/podgate/podgate/pool"
	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/scheduler"
)

// Execer runs a command in a pod; kube.Executor implements it.
type Execer interface {
	Exec(ctx context.Context, pod scheduler.PodRef, cmd scheduler.Command) (scheduler.ExitStatus, error)
}

// Profiles looks up a profile by name; profile.Store implements it.
type Profiles interface {
	Get(name string) (profile.Entry, bool)
}

// execTimeout bounds one run of the script; its probes take at most a few
// seconds each.
const execTimeout = 30 * time.Second

// maxRetries bounds how often a pod whose exec failed is retried before
// the template waits for its next Ready pod.
const maxRetries = 3

// Checker runs the self-check once per profile template.
type Checker struct {
	pods     cache.SharedIndexInformer
	profiles Profiles
	exec     Execer
	log      *slog.Logger
	result   *prometheus.GaugeVec
	queue    workqueue.TypedRateLimitingInterface[string]

	// mu protects checked.
	mu sync.Mutex
	// checked holds "profile/hash" of templates checked or being
	// checked, so each template runs the script once.
	checked map[string]bool
}

// New returns a Checker fed by pods, the shared informer over podgate's
// managed pods. It registers podgate_guest_check on reg.
func New(pods cache.SharedIndexInformer, profiles Profiles, exec Execer, log *slog.Logger, reg prometheus.Registerer) (*Checker, error) {
	c := &Checker{
		pods: pods, profiles: profiles, exec: exec, log: log,
		result: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podgate_guest_check",
			Help: "Sandbox self-check from inside a profile's first Ready pod: 1 the check passed, 0 it failed (see the README for each check).",
		}, []string{"profile", "check"}),
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		checked: map[string]bool{},
	}
	if err := reg.Register(c.result); err != nil {
		return nil, fmt.Errorf("registering guest check metric: %w", err)
	}
	_, err := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
	})
	if err != nil {
		return nil, fmt.Errorf("watching pods for the guest check: %w", err)
	}
	return c, nil
}

// Run checks templates until ctx ends.
func (c *Checker) Run(ctx context.Context) error {
	defer c.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), c.pods.HasSynced) {
		return nil // ctx ended first
	}
	stop := context.AfterFunc(ctx, c.queue.ShutDown)
	defer stop()
	for c.processNext(ctx) {
	}
	return nil
}

// enqueue adds a Ready pod of its profile's current template when that
// template is not checked yet. It runs on the informer's goroutine and
// does nothing else.
func (c *Checker) enqueue(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || !ready(pod) || c.isChecked(templateKey(pod)) || !c.current(pod) {
		return
	}
	key, err := cache.MetaNamespaceKeyFunc(pod)
	if err == nil {
		c.queue.Add(key)
	}
}

func (c *Checker) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	switch err := c.check(ctx, key); {
	case err == nil:
		c.queue.Forget(key)
	case ctx.Err() != nil:
	case c.queue.NumRequeues(key) < maxRetries:
		c.log.Debug("guest check failed to run; retrying", "pod", key, "err", err)
		c.queue.AddRateLimited(key)
	default:
		c.log.Info("guest check could not run; waiting for the template's next Ready pod", "pod", key, "err", err)
		c.queue.Forget(key)
	}
	return true
}

// check runs the script in the pod named key when its template has not
// been checked yet, and records the results.
func (c *Checker) check(ctx context.Context, key string) error {
	obj, exists, err := c.pods.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		return nil // gone: the template's next Ready pod will do
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok || !ready(pod) {
		return nil
	}
	name := pod.Labels[pool.LabelProfile]
	e, ok := c.profiles.Get(name)
	if !ok || e.Profile == nil || e.Profile.Hash != pod.Labels[pool.LabelHash] {
		return nil // the template changed since the pod was queued
	}
	tk := templateKey(pod)
	if !c.claim(tk) {
		return nil
	}
	results, err := c.run(ctx, pod, e.Profile.Container())
	if err != nil {
		c.release(tk)
		return err
	}
	c.record(name, pod.Name, results)
	return nil
}

// run execs the script in pod's container and parses its output.
func (c *Checker) run(ctx context.Context, pod *corev1.Pod, container string) ([]Result, error) {
	ctx, cancel := context.WithTimeout(ctx, execTimeout)
	defer cancel()
	var out, errb bytes.Buffer
	ref := scheduler.PodRef{Namespace: pod.Namespace, Name: pod.Name, Container: container}
	st, err := c.exec.Exec(ctx, ref, scheduler.Command{
		Argv:   []string{"/bin/sh", "-c", script, "podgate-guest-check", pod.Status.HostIP},
		Stdin:  bytes.NewReader(nil),
		Stdout: &out, Stderr: &errb,
	})
	if err != nil {
		return nil, fmt.Errorf("running the guest check in pod %s: %w", pod.Name, err)
	}
	rs := parse(out.String())
	if len(rs) == 0 {
		return nil, fmt.Errorf("guest check in pod %s printed no result (exit %d, stderr %q): %w", pod.Name, st.Code, errb.String(), errNoResult)
	}
	return rs, nil
}

var errNoResult = errors.New("no check result")

// record sets the gauge for each known result and logs one warning per
// failed check.
func (c *Checker) record(profileName, podName string, rs []Result) {
	failed := 0
	for _, r := range rs {
		if !r.Known {
			c.log.Info("guest check could not decide", "profile", profileName, "check", r.Check, "detail", r.Detail)
			continue
		}
		v := 0.0
		if r.Pass {
			v = 1
		} else {
			failed++
			c.log.Warn("guest sandbox check failed", "profile", profileName, "check", r.Check, "detail", r.Detail,
				"pod", podName, "fix", fix(r.Check))
		}
		c.result.WithLabelValues(profileName, r.Check).Set(v)
	}
	c.log.Info("guest sandbox checked", "profile", profileName, "pod", podName, "checks", len(rs), "failed", failed)
}

func (c *Checker) isChecked(tk string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checked[tk]
}

// claim marks a template as being checked; it reports false when it
// already was.
func (c *Checker) claim(tk string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checked[tk] {
		return false
	}
	c.checked[tk] = true
	return true
}

// release lets a template be checked again after a failed run.
func (c *Checker) release(tk string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.checked, tk)
}

// current reports whether pod is of its profile's current template: pods
// of a stale one are not what users get.
func (c *Checker) current(pod *corev1.Pod) bool {
	e, ok := c.profiles.Get(pod.Labels[pool.LabelProfile])
	return ok && e.Profile != nil && e.Profile.Hash == pod.Labels[pool.LabelHash]
}

func templateKey(pod *corev1.Pod) string {
	return pod.Labels[pool.LabelProfile] + "/" + pod.Labels[pool.LabelHash]
}

func ready(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Labels[pool.LabelProfile] == "" {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
