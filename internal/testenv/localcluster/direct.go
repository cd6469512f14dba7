package localcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Direct control is the fallback for a cluster whose supervisor predates
// the control socket: the caller stops the daemon itself (its process
// group, found through the pid file) after saving its command line and
// environment, and starts it again from what it saved. The supervisor of
// such a cluster only logs the exit, and `down` still finds the restarted
// daemon, because cleanup kills every harness daemon whose command line
// names the state directory.

// savedCmd is a stopped daemon's command line and environment.
type savedCmd struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
}

func (o Options) savedPath(name string) string { return o.path("run", name+".stopped.json") }
func (o Options) pidPath(name string) string   { return o.path("run", name+".pid") }

// livePID returns the pid in name's pid file when that process is alive.
func (o Options) livePID(name string) (int, bool) {
	b, err := os.ReadFile(o.pidPath(name))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, alive(pid)
}

// splitNUL splits a /proc cmdline or environ file.
func splitNUL(b []byte) []string {
	s := strings.TrimRight(string(b), "\x00")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x00")
}

func (o Options) stopDirect(ctx context.Context, name string) error {
	pid, ok := o.livePID(name)
	if !ok {
		if _, err := os.Stat(o.savedPath(name)); err == nil {
			return nil // already stopped
		}
		return fmt.Errorf("%s is not running and was not stopped by a control request", name)
	}
	argv, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return fmt.Errorf("reading %s's command line: %w", name, err)
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return fmt.Errorf("reading %s's environment: %w", name, err)
	}
	b, err := json.Marshal(savedCmd{Argv: splitNUL(argv), Env: splitNUL(env)})
	if err != nil {
		return err
	}
	if err := writeFile(o.savedPath(name), b, 0o600); err != nil {
		return err
	}
	// The harness starts every daemon in its own process group.
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
	o.Log.Info("daemon stopped directly", "name", name, "pid", pid)
	return nil
}

func (o Options) startDirect(ctx context.Context, name string) error {
	if _, ok := o.livePID(name); ok {
		return nil
	}
	b, err := os.ReadFile(o.savedPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s is not running and was not stopped by a control request", name)
	}
	if err != nil {
		return err
	}
	var sc savedCmd
	if err := json.Unmarshal(b, &sc); err != nil || len(sc.Argv) == 0 {
		return fmt.Errorf("reading %s: bad saved command line", o.savedPath(name))
	}
	f, err := os.OpenFile(o.path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// The daemon outlives this process: it must not inherit descriptors
	// this process got from its own parent, such as a lock held by the
	// flock(1) that runs a test, which it would then hold forever.
	closeInheritedOnExec()
	cmd := exec.Command(sc.Argv[0], sc.Argv[1:]...)
	cmd.Env = sc.Env
	cmd.Stdout, cmd.Stderr = f, f
	// Its own session: it must outlive the caller (a test process).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	f.Close()
	if err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	// Reap it should it exit while this process lives.
	go func() { _ = cmd.Wait() }()
	if err := writeFile(o.pidPath(name), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return err
	}
	_ = os.Remove(o.savedPath(name))
	if url := controllable[name]; url != "" {
		client, err := o.adminHTTPClient()
		if err != nil {
			return err
		}
		err = o.until(ctx, nil, 100*time.Millisecond, func() error {
			if !alive(pid) {
				return fmt.Errorf("%s exited; see its log", name)
			}
			resp, err := client.Get(url)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("%s: %s", url, resp.Status)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", name, err)
		}
	}
	o.Log.Info("daemon started directly", "name", name, "pid", pid)
	return nil
}

// closeInheritedOnExec marks every descriptor above stderr close-on-exec.
// Go opens its own files that way already; this catches those inherited.
func closeInheritedOnExec() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
