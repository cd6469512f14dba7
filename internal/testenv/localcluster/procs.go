package localcluster

import (
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is a running daemon, a child of the supervisor that Waits on it, so
// that its exit is seen at once (PID 1 here reaps orphans only every 1–2 s).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // set before done is closed
	// deliberate is set before a control request stops the daemon, so
	// that its exit is not reported as a failure.
	deliberate atomic.Bool
	// afterStop is the component's hook, run by stop once the process
	// has exited.
	afterStop func()
}

func (o Options) start(c component) (*proc, error) {
	cmd := c.cmd()
	f, err := o.logFile(c.name)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	// A new process group lets stop signal the daemon and any helper it
	// forks, and keeps a Ctrl-C in the terminal from reaching it directly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", c.name, err)
	}
	p := &proc{name: c.name, cmd: cmd, done: make(chan struct{}), afterStop: c.afterStop}
	if c.afterStart != nil {
		if err := c.afterStart(cmd.Process.Pid); err != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
			f.Close()
			return nil, fmt.Errorf("starting %s: %w", c.name, err)
		}
	}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	if err := writeFile(o.path("run", c.name+".pid"), []byte(fmt.Sprint(cmd.Process.Pid)), 0o644); err != nil {
		return p, err
	}
	return p, nil
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs the process group,
// and runs the component's afterStop hook.
func (p *proc) stop(grace time.Duration) {
	if p.afterStop != nil {
		defer p.afterStop()
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// alive reports whether pid is a live, non-zombie process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	for i := len(b) - 1; i > 0; i-- {
		if b[i] == ')' {
			return i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
		}
	}
	return false
}
