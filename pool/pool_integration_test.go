package pool

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/scheduler"
)

func claimFor(user, session string) scheduler.Claim {
	return scheduler.Claim{
		Identity: scheduler.Identity{User: user, RemoteAddr: "192.0.2.1:1234", ConnID: session},
		Session:  session,
	}
}

// TestIntegrationFillClaimRefill proves the basic cycle on a real cluster:
// the pool fills to its target with Ready pods, a claim returns one pod
// relabelled as claimed (its record written with one PATCH), the pool
// refills at once, and
// Release deletes the claimed pod.
func TestIntegrationFillClaimRefill(t *testing.T) {
	env := kubetest.New(t)
	w := watchPods(t, env)
	r := startReplica(t, env, "r1", busybox(t, "default", 3), fastOptions(env.Namespace, "r1"), nil)
	w.until(t, 120*time.Second, "3 idle Ready pods", func(p []*corev1.Pod) bool { return count(p, StateIdle) == 3 })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pod, err := r.pool.Claim(ctx, "", claimFor("alice@example.com", "conn-1"))
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if err := pod.Record.Wait(ctx); err != nil {
		t.Fatalf("claim record: %v", err)
	}
	if !pod.Warm || pod.Profile != "default" || pod.Ref.Container != "guest" {
		t.Errorf("claimed %+v, want a warm default pod in container guest", pod)
	}
	got, err := env.Client.CoreV1().Pods(env.Namespace).Get(ctx, pod.Ref.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[LabelState] != StateClaimed || got.Labels[LabelOwner] != "r1" || got.Labels[LabelSession] != "conn-1" {
		t.Errorf("claimed pod labels = %v", got.Labels)
	}
	if got.Annotations[AnnUser] != "alice@example.com" || got.Annotations[AnnClaimedAt] == "" {
		t.Errorf("claimed pod annotations = %v", got.Annotations)
	}
	if got.Spec.SecurityContext == nil || got.Spec.SecurityContext.RunAsNonRoot == nil || !*got.Spec.SecurityContext.RunAsNonRoot {
		t.Errorf("pod lacks runAsNonRoot: %+v", got.Spec.SecurityContext)
	}
	w.until(t, 60*time.Second, "refill to 3 idle + 1 claimed", func(p []*corev1.Pod) bool {
		return count(p, StateIdle) == 3 && count(p, StateClaimed) == 1
	})

	if err := r.pool.Release(ctx, pod); err != nil {
		t.Fatalf("Release: %v", err)
	}
	_, err = env.Client.CoreV1().Pods(env.Namespace).Get(ctx, pod.Ref.Name, metav1.GetOptions{})
	if err == nil {
		w.until(t, 30*time.Second, "released pod gone", func(p []*corev1.Pod) bool {
			for _, x := range p {
				if x.Name == pod.Ref.Name {
					return false
				}
			}
			return true
		})
	} else if !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if r.pool.Alive(pod) {
		t.Error("Alive reports a released pod")
	}
}

// TestIntegrationColdCreate proves the miss path: with an empty pool, Claim
// reports ErrNoIdlePod, and Create makes a pod claimed from birth that is
// returned once Ready, with progress reported on the way.
func TestIntegrationColdCreate(t *testing.T) {
	env := kubetest.New(t)
	r := startReplica(t, env, "r1", busybox(t, "default", 0), fastOptions(env.Namespace, "r1"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := r.pool.Claim(ctx, "default", claimFor("bob", "c1")); !errors.Is(err, scheduler.ErrNoIdlePod) {
		t.Fatalf("Claim on an empty pool: %v, want ErrNoIdlePod", err)
	}
	var phases []string
	pod, err := r.pool.AwaitPod(ctx, "default", claimFor("bob", "c1"), func(s scheduler.WaitState) { phases = append(phases, s.Phase) })
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if pod.Warm || !r.pool.Alive(pod) {
		t.Errorf("cold pod: warm=%v alive=%v", pod.Warm, r.pool.Alive(pod))
	}
	if len(phases) == 0 {
		t.Error("no progress reported while waiting")
	}
	got, err := env.Client.CoreV1().Pods(env.Namespace).Get(ctx, pod.Ref.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[LabelState] != StateClaimed || got.Annotations[AnnCold] != "true" {
		t.Errorf("cold pod labels %v annotations %v", got.Labels, got.Annotations)
	}
	if err := r.pool.Release(ctx, pod); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationTemplateChange defines a profile as a PodTemplate, lets
// its pool fill, claims one pod and then edits the template: the idle pods
// are replaced by pods of the new template, the claimed pod is left alone.
func TestIntegrationTemplateChange(t *testing.T) {
	env := kubetest.New(t)
	w := watchPods(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := busybox(t, "web", 2).Template
	pt := &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "web",
			Labels:      map[string]string{profile.LabelProfile: "web"},
			Annotations: map[string]string{profile.AnnPoolMin: "2"},
		},
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "main", Image: kubetest.BusyboxImage, ImagePullPolicy: corev1.PullIfNotPresent,
			Command:   base.Spec.Containers[0].Command,
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1m"), corev1.ResourceMemory: resource.MustParse("8Mi")}},
		}}}},
	}
	pt, err := env.Client.CoreV1().PodTemplates(env.Namespace).Create(ctx, pt, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, env, "r1", nil, fastOptions(env.Namespace, "r1"), nil)
	w.until(t, 120*time.Second, "2 idle web pods", func(p []*corev1.Pod) bool { return count(p, StateIdle) == 2 })
	claimed, err := r.pool.Claim(ctx, "web", claimFor("alice", "c1"))
	if err == nil {
		err = claimed.Record.Wait(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	e, _ := r.store.Get("web")
	oldHash := e.Profile.Hash

	pt.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "VERSION", Value: "2"}}
	if _, err := env.Client.CoreV1().PodTemplates(env.Namespace).Update(ctx, pt, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.until(t, 90*time.Second, "2 idle pods of the new template and no old idle pod", func(p []*corev1.Pod) bool {
		fresh := 0
		for _, x := range p {
			if !Spare(x) || x.DeletionTimestamp != nil {
				continue
			}
			if x.Labels[LabelHash] == oldHash {
				return false
			}
			if podReady(x) {
				fresh++
			}
		}
		return fresh == 2
	})
	if !r.pool.Alive(claimed) {
		t.Error("the claimed pod of the old template was deleted")
	}
	if err := r.pool.Release(ctx, claimed); err != nil {
		t.Fatal(err)
	}
}
