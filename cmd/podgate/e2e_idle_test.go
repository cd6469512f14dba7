package main

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/podgate/podgate/internal/testenv/kubetest"
	"github.com/podgate/podgate/internal/testenv/podgatetest"
)

// podLister is an informer-fed view of the test namespace's managed pods,
// so that tests read the cluster's state from a cache, not in Get loops.
func podLister(t *testing.T, env *kubetest.Env) listersv1.PodNamespaceLister {
	t.Helper()
	f := informers.NewSharedInformerFactoryWithOptions(env.Client, 0, informers.WithNamespace(env.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = "podgate.io/managed=true" }))
	pods := f.Core().V1().Pods()
	inf := pods.Informer()
	stop := make(chan struct{})
	f.Start(stop)
	t.Cleanup(func() { close(stop); f.Shutdown() })
	if !cache.WaitForCacheSync(stop, inf.HasSynced) {
		t.Fatal("pod informer did not sync")
	}
	return pods.Lister().Pods(env.Namespace)
}

// TestIdleTimeout leaves an interactive ssh -tt session idle: the user gets
// the in-terminal warning, then the goodbye line, the session ends, and
// the pod it was given is deleted.
func TestIdleTimeout(t *testing.T) {
	const idle = 6 * time.Second
	env := kubetest.New(t)
	pods := podLister(t, env)
	s := startPodgate(t, env, "PODGATE_IDLE_TIMEOUT="+idle.String())

	cmd := exec.Command("ssh", append(s.sshArgs(s.key, "-tt", "-p", s.port), "alice@127.0.0.1")...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	screen := &podgatetest.SafeBuffer{}
	cmd.Stdout, cmd.Stderr = screen, screen
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error // valid once exited is closed
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	// One command to learn the pod (its hostname), then nothing at all.
	if _, err := stdin.Write([]byte("echo pod=$(hostname)\n")); err != nil {
		t.Fatal(err)
	}
	podName := regexp.MustCompile(`pod=(podgate-[a-z0-9-]+)`)
	var pod string
	eventually(t, 30*time.Second, "the shell printing its pod", func() bool {
		m := podName.FindStringSubmatch(screen.String())
		if m != nil {
			pod = m[1]
		}
		return m != nil
	})
	if p, err := pods.Get(pod); err != nil || p.Labels["podgate.io/state"] != "claimed" {
		t.Fatalf("session pod %s: %v, labels %v; want a claimed pod", pod, err, labelsOf(p))
	}

	select {
	case <-exited:
	case <-time.After(idle + 30*time.Second):
		t.Fatalf("session still open %s after the last input:\n%s", idle+30*time.Second, screen.String())
	}
	out := screen.String()
	warn := strings.Index(out, "for inactivity; press a key to keep it open")
	bye := strings.Index(out, "podgate: no activity for "+idle.String()+", closing this session. Goodbye.")
	if warn < 0 || bye < 0 || warn > bye {
		t.Errorf("want the inactivity warning, then the goodbye line; terminal showed:\n%q", out)
	}
	if ee, ok := waitErr.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
		t.Errorf("ssh ended with %v, want a non-zero status for a cut session", waitErr)
	}
	eventually(t, kubetest.Timeout, "pod "+pod+" deleted after the session", func() bool {
		p, err := pods.Get(pod)
		return err != nil || p.DeletionTimestamp != nil
	})
}

func labelsOf(p *corev1.Pod) map[string]string {
	if p == nil {
		return nil
	}
	return p.Labels
}
