package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// ErrRunning is returned by Up when a cluster is already running.
var ErrRunning = errors.New("a local cluster is already running")

// lock takes the machine-wide cluster lock without blocking. The returned
// file holds the lock for as long as it (or a child that inherited it) is
// open.
func (o Options) lock() (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(o.lockPath()), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(o.lockPath(), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrRunning
		}
		return nil, fmt.Errorf("locking %s: %w", o.lockPath(), err)
	}
	return f, nil
}

// lockOrRecover is lock, except that a lock held while its supervisor is
// dead belongs to leftovers of a killed cluster (daemons that inherited
// it): they are cleaned up and the lock taken.
func (o Options) lockOrRecover() (*os.File, error) {
	f, err := o.lock()
	if !errors.Is(err, ErrRunning) {
		return f, err
	}
	if pid := o.supervisorPID(); pid > 0 && alive(pid) {
		return nil, err
	}
	o.Log.Info("the cluster lock is held but its supervisor is gone; cleaning up leftovers")
	if _, cerr := o.cleanup(false); cerr != nil {
		o.Log.Warn("cleaning up leftovers", "err", cerr)
	}
	return o.lock()
}

// supervisorPID reads the PID the running supervisor wrote into the lock.
func (o Options) supervisorPID() int {
	b, _ := os.ReadFile(o.lockPath())
	var pid int
	fmt.Sscan(string(b), &pid)
	return pid
}

// Serve is the supervisor: it cleans up after any earlier run, writes the
// PKI and configs, starts the daemons in order with readiness waits, marks
// the cluster ready, and on ctx's end (SIGTERM) tears it all down. lockFile
// must be the held cluster lock.
func (o Options) Serve(ctx context.Context, lockFile *os.File) error {
	// Closing only on return also keeps the *os.File reachable: its
	// finalizer would otherwise close the descriptor, and drop the lock,
	// at the next garbage collection.
	defer lockFile.Close()
	// Only the supervisor may hold the lock: without close-on-exec every
	// daemon it starts would inherit it and keep holding it after a
	// SIGKILL of the supervisor.
	syscall.CloseOnExec(int(lockFile.Fd()))
	if err := lockFile.Truncate(0); err == nil {
		fmt.Fprintf(lockFile, "%d\n", os.Getpid())
	}
	if l, err := o.cleanup(true); err != nil {
		o.Log.Warn("cleaning up an earlier cluster", "err", err)
	} else if !l.Empty() {
		o.Log.Info("removed leftovers of an earlier cluster", "found", l.String())
	}
	ip := nodeIP()
	if err := writePKI(o.StateDir, NodeName, ip); err != nil {
		return fmt.Errorf("writing PKI: %w", err)
	}
	if err := o.writeConfigs(ip); err != nil {
		return fmt.Errorf("writing configs: %w", err)
	}
	comps := o.components(ip)
	d := newDaemons()
	defer func() {
		o.stopAll(d.list())
		if pid := o.supervisorPID(); pid != os.Getpid() {
			// Another supervisor owns the state directory now; cleaning up
			// would tear down its cluster.
			o.Log.Warn("not cleaning up: the cluster lock names another supervisor", "pid", pid)
			return
		}
		if l, err := o.cleanup(true); err != nil {
			o.Log.Warn("cleaning up", "err", err)
		} else {
			o.Log.Info("cluster stopped", "cleaned", l.String())
		}
	}()
	start := func(names ...string) error {
		for _, n := range names {
			p, err := o.start(comps[n])
			if p != nil {
				d.add(p)
				o.track(ctx, p)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	t0 := time.Now()
	if err := start("etcd"); err != nil {
		return err
	}
	if err := o.waitHTTP(ctx, d.list(), "http://127.0.0.1:2379/health"); err != nil {
		return fmt.Errorf("waiting for etcd: %w", err)
	}
	if err := start("kube-apiserver"); err != nil {
		return err
	}
	if err := o.waitHTTP(ctx, d.list(), "https://127.0.0.1:"+apiPort+"/readyz"); err != nil {
		return fmt.Errorf("waiting for kube-apiserver: %w", err)
	}
	o.Log.Info("API server ready", "after", time.Since(t0).Round(time.Millisecond))
	if err := start("kube-controller-manager", "kube-scheduler", "containerd"); err != nil {
		return err
	}
	// The kubelet exits with "server is not initialized yet" if it starts
	// before containerd's CRI plugin.
	if err := o.waitLog(ctx, d.list(), "containerd", "Start streaming server"); err != nil {
		return fmt.Errorf("waiting for containerd: %w", err)
	}
	if err := o.importImages(ctx); err != nil {
		return err
	}
	if err := start("kubelet", "kube-proxy"); err != nil {
		return err
	}
	if err := o.waitNodeReady(ctx); err != nil {
		return fmt.Errorf("waiting for the node: %w", err)
	}
	// kube-router reads the Node object once at start (for the node's
	// address) and exits when it does not exist yet.
	if err := start("kube-router"); err != nil {
		return err
	}
	if err := o.waitHTTP(ctx, d.list(), controllable["kube-router"]); err != nil {
		return fmt.Errorf("waiting for kube-router: %w", err)
	}
	if o.KWOKNodes > 0 {
		if err := o.startKWOKServed(ctx, start, d.list, o.KWOKNodes); err != nil {
			return fmt.Errorf("starting KWOK: %w", err)
		}
	}
	o.Log.Info("cluster ready", "after", time.Since(t0).Round(time.Millisecond), "kubeconfig", o.Kubeconfig())
	if err := writeFile(o.readyPath(), []byte(time.Now().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return err
	}
	// Daemons that exit on their own are only logged (see track): fault
	// tests stop and start them on purpose through the control socket.
	if err := o.serveControl(ctx, d, comps); err != nil {
		o.Log.Warn("component control is off", "err", err)
		<-ctx.Done()
	}
	return nil
}

// stopAll stops the daemons in the reverse of the order they started,
// killing pod processes once the kubelet is gone so they cannot hold
// mounts.
func (o Options) stopAll(procs []*proc) {
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		p.stop(10 * time.Second)
		if p.name == "kubelet" {
			killCgroupTasks()
		}
	}
}

// Run is Serve with SIGTERM and SIGINT handling, for the supervisor
// process.
func (o Options) Run(lockFile *os.File) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return o.Serve(ctx, lockFile)
}
