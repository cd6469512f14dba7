package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// EnsureKWOKBinary builds KWOK from the Go module proxy unless the cache
// has it. Clusters without KWOK never build it.
func (o Options) EnsureKWOKBinary(ctx context.Context) error {
	if _, err := os.Stat(o.kwokBin()); err == nil {
		return nil
	}
	o.Log.Info("building KWOK from the Go module proxy (cold: a few minutes)", "version", KWOKVersion)
	return o.goBuild(ctx, filepath.Join(o.SourceDir, "kwokbuild"), "sigs.k8s.io/kwok/cmd/kwok", o.kwokBin(), "")
}

// prepareKWOK writes KWOK's files and grants it its rights, before it
// starts.
func (o Options) prepareKWOK(ctx context.Context, cs kubernetes.Interface) error {
	if err := o.writeKWOKFiles(); err != nil {
		return fmt.Errorf("writing KWOK's files: %w", err)
	}
	return kwokAccess(ctx, cs)
}

// KWOK gives the running cluster exactly nodes fake nodes: with nodes > 0
// it builds KWOK if needed, has the supervisor start it (or starts it from
// this process when the supervisor predates KWOK), and creates or deletes
// fake nodes until there are nodes of them, all Ready. With nodes == 0 it
// deletes every fake node and stops KWOK. The cluster keeps running
// either way.
func (o Options) KWOK(ctx context.Context, nodes int) error {
	cs, err := o.adminClient()
	if err != nil {
		return err
	}
	if nodes <= 0 {
		return o.removeKWOK(ctx, cs)
	}
	if err := o.EnsureKWOKBinary(ctx); err != nil {
		return err
	}
	if err := o.prepareKWOK(ctx, cs); err != nil {
		return err
	}
	err = o.control(ctx, request{verb: "start", name: "kwok"})
	if errors.Is(err, ErrNoControl) || (err != nil && strings.Contains(err.Error(), unknownComponent)) {
		o.Log.Info("the cluster's supervisor predates KWOK; starting KWOK from here", "reason", err)
		err = o.startKWOKDirect(ctx)
	}
	if err != nil {
		return fmt.Errorf("starting KWOK: %w", err)
	}
	if err := ensureFakeNodes(ctx, cs, nodes); err != nil {
		return err
	}
	o.Log.Info("KWOK ready", "fakeNodes", nodes)
	return nil
}

// removeKWOK deletes the fake nodes while KWOK still runs, then stops it
// and kills whatever its execs left.
func (o Options) removeKWOK(ctx context.Context, cs kubernetes.Interface) error {
	var errs []error
	if err := ensureFakeNodes(ctx, cs, 0); err != nil {
		errs = append(errs, err)
	}
	err := o.control(ctx, request{verb: "remove", name: "kwok"})
	if errors.Is(err, ErrNoControl) || (err != nil && strings.Contains(err.Error(), unknownComponent)) {
		err = o.stopKWOKDirect(ctx)
	}
	errs = append(errs, err)
	if n := killKWOKCgroup(); n > 0 {
		o.Log.Info("killed processes KWOK's execs left", "count", n)
	}
	errs = append(errs, o.removeKWOKHome())
	return errors.Join(errs...)
}

// startKWOKDirect starts KWOK from this process, detached, for a cluster
// whose supervisor does not know it. Such a supervisor does not stop it on
// down: KWOK(0) does, and cleanup by a supervisor that knows KWOK.
func (o Options) startKWOKDirect(ctx context.Context) error {
	if pid, ok := o.livePID("kwok"); ok {
		o.Log.Info("KWOK is already running", "pid", pid)
		return nil
	}
	f, err := o.logFile("kwok")
	if err != nil {
		return err
	}
	closeInheritedOnExec()
	cmd := o.kwokCommand()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	f.Close()
	if err != nil {
		return fmt.Errorf("starting kwok: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	if err := joinKWOKCgroup(pid); err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return err
	}
	if err := writeFile(o.pidPath("kwok"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return err
	}
	return o.waitKWOK(ctx, exited)
}

// waitKWOK waits until KWOK's health URL answers, failing at once if the
// process exits.
func (o Options) waitKWOK(ctx context.Context, exited <-chan struct{}) error {
	client, err := o.adminHTTPClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-exited:
			cancel(fmt.Errorf("kwok exited; see %s", filepath.Join(o.logDir(), "kwok.log")))
		case <-ctx.Done():
		}
	}()
	err = o.until(ctx, nil, 100*time.Millisecond, func() error {
		resp, err := client.Get(KWOKHealthURL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %s", KWOKHealthURL, resp.Status)
		}
		return nil
	})
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// stopKWOKDirect stops a KWOK that startKWOKDirect started.
func (o Options) stopKWOKDirect(ctx context.Context) error {
	pid, ok := o.livePID("kwok")
	if !ok {
		return nil
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	_ = os.Remove(o.pidPath("kwok"))
	return nil
}

// kwokStatus is the status line about KWOK: how many fake nodes are Ready.
func (o Options) kwokStatus(ctx context.Context, cs kubernetes.Interface) string {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: KWOKNodeSelector})
	if err != nil || len(list.Items) == 0 {
		if _, running := o.livePID("kwok"); running {
			return "kwok: running, no fake nodes"
		}
		return ""
	}
	ready := 0
	for i := range list.Items {
		if nodeReady(&list.Items[i]) {
			ready++
		}
	}
	return fmt.Sprintf("kwok: %d fake nodes, %d Ready (label %s, taint %s)", len(list.Items), ready, KWOKNodeSelector, KWOKTaintKey)
}

// startKWOKServed is Serve's start of KWOK when the cluster comes up with
// fake nodes.
func (o Options) startKWOKServed(ctx context.Context, start func(...string) error, procs func() []*proc, nodes int) error {
	if err := o.EnsureKWOKBinary(ctx); err != nil {
		return err
	}
	cs, err := o.adminClient()
	if err != nil {
		return err
	}
	if err := o.prepareKWOK(ctx, cs); err != nil {
		return err
	}
	if err := start("kwok"); err != nil {
		return err
	}
	if err := o.waitHTTP(ctx, procs(), KWOKHealthURL); err != nil {
		return fmt.Errorf("waiting for kwok: %w", err)
	}
	return ensureFakeNodes(ctx, cs, nodes)
}
