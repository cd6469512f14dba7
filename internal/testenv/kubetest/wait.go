package kubetest

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// WaitPodReady waits, through a shared informer scoped to the pod's name,
// until the pod is Ready, and returns it. It fails fast when the pod
// reaches a terminal phase.
func (e *Env) WaitPodReady(ctx context.Context, name string) (*corev1.Pod, error) {
	factory := informers.NewSharedInformerFactoryWithOptions(e.Client, 0,
		informers.WithNamespace(e.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + name }))
	inf := factory.Core().V1().Pods().Informer()
	result := make(chan *corev1.Pod, 1)
	failed := make(chan error, 1)
	check := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		switch {
		case PodReady(p):
			select {
			case result <- p.DeepCopy():
			default:
			}
		case p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded:
			select {
			case failed <- fmt.Errorf("pod %s ended in phase %s", name, p.Status.Phase):
			default:
			}
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    check,
		UpdateFunc: func(_, n any) { check(n) },
	}); err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	factory.Start(stop)
	defer func() {
		close(stop) // Shutdown waits for the informers, which stop on this.
		factory.Shutdown()
	}()
	select {
	case p := <-result:
		return p, nil
	case err := <-failed:
		return nil, err
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for pod %s to be Ready: %w", name, ctx.Err())
	}
}

// PodReady reports whether the pod's Ready condition is true.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// IdlePod is a minimal pod that idles until deleted and exits promptly on
// SIGTERM, with podgate's secure defaults.
func IdlePod(name, image string) *corev1.Pod {
	no, yes := false, true
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			TerminationGracePeriodSeconds: &grace,
			SecurityContext:               &corev1.PodSecurityContext{RunAsNonRoot: &yes},
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           image,
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: &no,
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}

// Timeout is a generous bound for waits in integration tests: a pod is Ready
// in about a second here, so hitting it means something is broken.
const Timeout = 2 * time.Minute
