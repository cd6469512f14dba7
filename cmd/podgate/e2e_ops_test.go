package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgate/podgate/internal/testenv/kubetest"
)

// scrape returns the text of podgate's /metrics.
func (s *server) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + s.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// histogramCount sums the _count series of a histogram.
func histogramCount(text, name string) float64 {
	var total float64
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, name+"_count") {
			var v float64
			fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v)
			total += v
		}
	}
	return total
}

// TestMetricsDuringUse: after real OpenSSH use, every podgate histogram has
// observations at /metrics, the phases are all there, and promlint finds
// nothing to fix in the whole exposition.
func TestMetricsDuringUse(t *testing.T) {
	env := kubetest.New(t)
	s := startPodgate(t, env, "PODGATE_POOL_MIN=1")
	// Warm attaches, then a cold one: two connections held open at once
	// against a pool of one.
	hold := exec.Command("ssh", append(s.sshArgs(s.key, "-p", s.port), "alice@127.0.0.1", "sleep 30")...)
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { hold.Process.Kill(); hold.Wait() }()
	for range 3 {
		if _, errOut, code := runCmd(t, s.ssh("alice", "true"), nil); code != 0 {
			t.Fatalf("ssh true: %d %s", code, errOut)
		}
	}
	// With reserved pods those logins are usually served warm, by the
	// pool's reserved and refill pods, so a cold start is made for sure:
	// a profile with no warm pool, whose first login waits for a pod of
	// its own. That login may be handed a refill pod that turned Ready
	// first; its own pod then joins the pool and its start is measured
	// when it is Ready, which may be after the login.
	createProfile(t, s, "cold", selectableNoMin(nil), debianSpec("cold"), echoesAs(t, s, "alice+cold"))
	eventually(t, kubetest.Timeout, "a cold pod start measured", func() bool {
		return histogramCount(s.scrape(t), "podgate_pod_start_duration_seconds") > 0
	})
	text := s.scrape(t)
	for _, h := range []string{"podgate_attach_duration_seconds", "podgate_phase_duration_seconds",
		"podgate_pod_start_duration_seconds", "podgate_session_duration_seconds",
		"podgate_kube_request_duration_seconds", "podgate_kube_rate_limiter_duration_seconds"} {
		if histogramCount(text, h) == 0 {
			t.Errorf("%s has no observations", h)
		}
	}
	for _, phase := range []string{"handshake", "auth", "claim", "exec_start"} {
		if !strings.Contains(text, `podgate_phase_duration_seconds_count{phase="`+phase+`"}`) {
			t.Errorf("phase %s never observed", phase)
		}
	}
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "podgate_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
}

// TestShutdownDrain: SIGTERM with 5 live sessions. New connections are
// refused at once, every user sees the warning, podgate exits within the
// drain deadline, and no claimed pod is left behind (idle pods stay, by
// design, for the next replica).
func TestShutdownDrain(t *testing.T) {
	env := kubetest.New(t)
	s := startPodgate(t, env, "PODGATE_POOL_MIN=5", "PODGATE_POOL_MAX=10", "PODGATE_DRAIN_DEADLINE=5s",
		"PODGATE_MAX_PODS_PER_USER=0", "PODGATE_MAX_CONNECTIONS_PER_USER=0")
	type live struct {
		cmd   *exec.Cmd
		lines chan string
	}
	var sessions []live
	for i := range 5 {
		c := exec.Command("ssh", append(s.sshArgs(s.key, "-p", s.port), "alice@127.0.0.1", "echo ready; sleep 300")...)
		stdout, _ := c.StdoutPipe()
		stderr, _ := c.StderrPipe()
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		l := live{cmd: c, lines: make(chan string, 64)}
		for _, r := range []io.Reader{stdout, stderr} {
			go func() {
				sc := bufio.NewScanner(r)
				for sc.Scan() {
					l.lines <- sc.Text()
				}
			}()
		}
		select {
		case line := <-l.lines:
			if line != "ready" && !strings.HasPrefix(line, "waiting for a pod") {
				t.Fatalf("session %d: unexpected %q", i, line)
			}
		case <-time.After(kubetest.Timeout):
			t.Fatalf("session %d never started", i)
		}
		sessions = append(sessions, l)
		defer func() { c.Process.Kill(); c.Wait() }()
	}
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Every user is told, in their session.
	for i, l := range sessions {
		deadline := time.After(10 * time.Second)
		for warned := false; !warned; {
			select {
			case line := <-l.lines:
				warned = strings.Contains(line, "server is restarting")
			case <-deadline:
				t.Fatalf("session %d never saw the shutdown warning", i)
			}
		}
	}
	// New connections are refused at once (the listener is closed).
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+s.port, time.Second); err == nil {
		c.Close()
		t.Errorf("a new connection was accepted during shutdown")
	}
	// podgate exits within the drain deadline (5s) plus release work.
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("podgate still running 30s after SIGTERM")
	}
	t.Logf("podgate exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	// No claimed pod survives; deletes may still be terminating.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods, err := env.Client.CoreV1().Pods(env.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "podgate.io/state=claimed"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			t.Errorf("claimed pod %s left behind after shutdown", p.Name)
		}
	}
}
