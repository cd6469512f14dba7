package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/localcluster"
)

// TestPodEventsStory: with PODGATE_POD_EVENTS=all, a login's pod tells its
// story in `kubectl describe pod`: claimed for alice and her connection,
// parked for her reconnect window when she logs out; and, once podgate
// shuts down, still parked (parked pods live in the cluster, for a
// reconnect through another replica), with no Released Event.
func TestPodEventsStory(t *testing.T) {
	env := kubetest.New(t)
	s := startPodgate(t, env, "PODGATE_POD_EVENTS=all", "PODGATE_RECONNECT_WINDOW=10m")
	out, errOut, code := runCmd(t, s.ssh("alice", "cat /etc/hostname"), nil)
	name := strings.TrimSpace(out)
	if code != 0 || name == "" {
		t.Fatalf("ssh: exit %d, output %q, stderr %q", code, out, errOut)
	}
	pod, err := env.Client.CoreV1().Pods(env.Namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitPodEvents(t, env, pod.Name, pod.UID, "Claimed", "Parked")

	describe := kubectlDescribe(t, env, pod.Name)
	for _, want := range []string{
		`Claimed`, `claimed for user "alice", connection `,
		`Parked`, `kept for user "alice" to reconnect within 10m0s`, "podgate",
	} {
		if !strings.Contains(describe, want) {
			t.Errorf("kubectl describe pod lacks %q:\n%s", want, describe)
		}
	}
	if i := strings.Index(describe, "Events:"); i >= 0 {
		t.Logf("kubectl describe pod %s, its events:\n%s", pod.Name, describe[i:])
	}
	if err := s.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	// podgate has exited: its Events are in the API or lost, so one read
	// tells.
	evs := podEvents(t, env, pod.Name, pod.UID)
	if _, ok := evs["Released"]; ok {
		t.Errorf("after shutdown the pod's events are %v; want it still parked, not released", reasonsOf(evs))
	}
	after, err := env.Client.CoreV1().Pods(env.Namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil || after.UID != pod.UID || after.Labels["podgate.io/state"] != "parked" {
		t.Errorf("after shutdown the pod is %v (%v); want it still parked", after.GetLabels(), err)
	}
}

// TestPodEventsUnpullableImage: a profile whose image cannot be pulled is
// refused to its user with the plain reason, and the pod that showed it
// carries a Warning naming the degraded profile, next to the kubelet's own
// events about the pull; with the default PODGATE_POD_EVENTS.
func TestPodEventsUnpullableImage(t *testing.T) {
	env := kubetest.New(t)
	s := startPodgate(t, env)
	no := false
	pt := &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "noimage", Labels: map[string]string{"podgate.io/profile": "noimage"},
			Annotations: map[string]string{"podgate.io/user-selectable": "true", "podgate.io/pool-min": "1"}},
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			AutomountServiceAccountToken: &no,
			Containers:                   []corev1.Container{{Name: "main", Image: "localhost/podgate-missing:never", ImagePullPolicy: corev1.PullIfNotPresent}},
		}},
	}
	if _, err := env.Client.CoreV1().PodTemplates(env.Namespace).Create(context.Background(), pt, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Until the informer shows the profile, a login is refused as
	// unknown; then with the image's reason.
	eventually(t, kubetest.Timeout, "a login to noimage refused for its image", func() bool {
		_, errOut, code := runCmd(t, s.ssh("alice+noimage", "true"), nil)
		return code != 0 && strings.Contains(errOut, "the image for this environment cannot be pulled")
	})
	ev := waitEvent(t, env, fields.SelectorFromSet(fields.Set{"reason": "ProfileDegraded", "involvedObject.kind": "Pod"}))
	for _, want := range []string{`profile "noimage" is degraded: ImagePull`, "cannot be pulled", "localhost/podgate-missing:never"} {
		if !strings.Contains(ev.Message, want) {
			t.Errorf("ProfileDegraded note %q lacks %q", ev.Message, want)
		}
	}
	if ev.Type != corev1.EventTypeWarning || ev.ReportingController != "podgate" {
		t.Errorf("event type %q from %q, want a Warning from podgate", ev.Type, ev.ReportingController)
	}
	// What kubectl describe would list for that pod (it is deleted by
	// now): podgate's Warning and the kubelet's account of the pull.
	evs := podEvents(t, env, ev.InvolvedObject.Name, ev.InvolvedObject.UID)
	if _, ok := evs["ProfileDegraded"]; !ok {
		t.Errorf("the pod's events %v lack ProfileDegraded", reasonsOf(evs))
	}
	t.Logf("events of pod %s: %v", ev.InvolvedObject.Name, reasonsOf(evs))
}

// describeSelector selects a pod's Events as kubectl describe does: by the
// pod's name, namespace, kind and UID.
func describeSelector(env *kubetest.Env, name string, uid types.UID) fields.Selector {
	kind, id := "Pod", string(uid)
	return env.Client.CoreV1().Events(env.Namespace).GetFieldSelector(&name, &env.Namespace, &kind, &id)
}

// podEvents reads a pod's Events once, keyed by reason (the latest of
// each).
func podEvents(t *testing.T, env *kubetest.Env, name string, uid types.UID) map[string]corev1.Event {
	t.Helper()
	list, err := env.Client.CoreV1().Events(env.Namespace).List(context.Background(), metav1.ListOptions{FieldSelector: describeSelector(env, name, uid).String()})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]corev1.Event{}
	for _, ev := range list.Items {
		out[ev.Reason] = ev
	}
	return out
}

func reasonsOf(evs map[string]corev1.Event) []string {
	var out []string
	for r, ev := range evs {
		out = append(out, r+": "+ev.Message)
	}
	return out
}

// waitPodEvents watches a pod's Events until every reason in want is there.
func waitPodEvents(t *testing.T, env *kubetest.Env, name string, uid types.UID, want ...string) {
	t.Helper()
	seen := map[string]bool{}
	untilEvent(t, env, describeSelector(env, name, uid), func(ev *corev1.Event) bool {
		seen[ev.Reason] = true
		for _, r := range want {
			if !seen[r] {
				return false
			}
		}
		return true
	}, "events "+strings.Join(want, ", ")+" on pod "+name)
}

// waitEvent watches for the first Event the selector matches.
func waitEvent(t *testing.T, env *kubetest.Env, sel fields.Selector) *corev1.Event {
	t.Helper()
	var got *corev1.Event
	untilEvent(t, env, sel, func(ev *corev1.Event) bool { got = ev; return true }, "an event "+sel.String())
	return got
}

// untilEvent lists and watches the namespace's Events the selector matches
// until done says so.
func untilEvent(t *testing.T, env *kubetest.Env, sel fields.Selector, done func(*corev1.Event) bool, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kubetest.Timeout)
	defer cancel()
	events := env.Client.CoreV1().Events(env.Namespace)
	lw := &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel.String()
			return events.List(ctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel.String()
			return events.Watch(ctx, o)
		},
	}
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Event{}, nil, func(e watch.Event) (bool, error) {
		ev, ok := e.Object.(*corev1.Event)
		return ok && (e.Type == watch.Added || e.Type == watch.Modified) && done(ev), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// kubectlDescribe runs the real `kubectl describe pod`: the local
// cluster's kubectl (it matches the cluster), $KUBECTL, or kubectl on PATH.
func kubectlDescribe(t *testing.T, env *kubetest.Env, name string) string {
	t.Helper()
	path := os.Getenv("KUBECTL")
	if path == "" {
		path = localcluster.Options{CacheDir: localcluster.DefaultCacheDir()}.KubectlPath()
		if _, err := os.Stat(path); err != nil {
			if path, err = exec.LookPath("kubectl"); err != nil {
				t.Skip("no kubectl: run `make cluster-up` (it builds one) or put kubectl on PATH")
			}
		}
	}
	cmd := exec.Command(path, "--kubeconfig", kubetest.Kubeconfig(), "-n", env.Namespace, "describe", "pod", name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl describe pod %s: %v\n%s", name, err, out)
	}
	return string(out)
}
