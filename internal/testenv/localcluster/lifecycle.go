package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Up prepares everything a cluster needs (packages, binaries, image
// archives), then starts the supervisor as a detached process running
// serveArgv, handing it the cluster lock, and waits until the cluster is
// ready or the supervisor fails. It returns ErrRunning when a cluster is
// already running.
func (o Options) Up(ctx context.Context, serveArgv []string) error {
	if os.Geteuid() != 0 {
		return errors.New("the local cluster needs root (it runs containerd, the kubelet and iptables)")
	}
	// Refuse before any slow step when a cluster is already running.
	lf, err := o.lockOrRecover()
	if err != nil {
		if errors.Is(err, ErrRunning) {
			return fmt.Errorf("%w (supervisor pid %d, KUBECONFIG=%s); run `make cluster-down` first", err, o.supervisorPID(), o.Kubeconfig())
		}
		return err
	}
	defer lf.Close()
	if err := o.EnsurePackages(ctx); err != nil {
		return err
	}
	if err := o.EnsureBinaries(ctx); err != nil {
		return err
	}
	if err := o.EnsureImages(ctx); err != nil {
		return err
	}
	if o.KWOKNodes > 0 {
		if err := o.EnsureKWOKBinary(ctx); err != nil {
			return err
		}
	}
	logPath := o.StateDir + ".log"
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	os.Remove(o.readyPath())
	cmd := exec.Command(serveArgv[0], serveArgv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{lf} // fd 3: the lock, held for the supervisor's life
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the supervisor: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("the cluster failed to start (%v); log %s:\n%s", err, logPath, tail(logPath, 30))
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-exited
			return ctx.Err()
		case <-t.C:
			if _, err := os.Stat(o.readyPath()); err == nil {
				// Leave the supervisor running on its own.
				_ = cmd.Process.Release()
				return nil
			}
		}
	}
}

// Down stops a running cluster's supervisor, which tears everything down,
// and then cleans up whatever is left (all of it, when the supervisor was
// killed), returning what that last pass found.
func (o Options) Down(ctx context.Context) (Leftovers, error) {
	lf, err := o.lock()
	if errors.Is(err, ErrRunning) {
		pid := o.supervisorPID()
		if pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		deadline := time.Now().Add(90 * time.Second)
		for errors.Is(err, ErrRunning) && alive(pid) && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return Leftovers{}, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
			lf, err = o.lock()
		}
		if pid > 0 && alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if errors.Is(err, ErrRunning) {
			lf, err = o.lockOrRecover()
		}
	}
	if err != nil {
		return Leftovers{}, err
	}
	defer lf.Close()
	return o.cleanup(true)
}

// Status describes the cluster for `make cluster-status`.
func (o Options) Status(ctx context.Context, w io.Writer) error {
	lf, err := o.lock()
	if err == nil {
		lf.Close()
		fmt.Fprintln(w, "cluster: not running")
		return nil
	}
	if !errors.Is(err, ErrRunning) {
		return err
	}
	fmt.Fprintf(w, "cluster: running (supervisor pid %d)\n", o.supervisorPID())
	if _, err := os.Stat(o.readyPath()); err != nil {
		fmt.Fprintln(w, "state: starting")
		return nil
	}
	fmt.Fprintf(w, "kubeconfig: %s\n", o.Kubeconfig())
	cs, err := o.adminClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		fmt.Fprintf(w, "node: unreachable: %v\n", err)
	} else {
		ready := "NotReady"
		if nodeReady(n) {
			ready = "Ready"
		}
		fmt.Fprintf(w, "node: %s %s (kubelet %s)\n", n.Name, ready, n.Status.NodeInfo.KubeletVersion)
		fmt.Fprintln(w, "images:")
		for _, im := range n.Status.Images {
			fmt.Fprintf(w, "  %s (%d MB)\n", strings.Join(im.Names, ", "), im.SizeBytes>>20)
		}
	}
	if line := o.kwokStatus(ctx, cs); line != "" {
		fmt.Fprintln(w, line)
	}
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err == nil {
		phases := map[corev1.PodPhase]int{}
		for _, p := range pods.Items {
			phases[p.Status.Phase]++
		}
		fmt.Fprintf(w, "pods: %d %v\n", len(pods.Items), phases)
	}
	return nil
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
