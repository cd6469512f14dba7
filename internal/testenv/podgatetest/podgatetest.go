// Package podgatetest runs the real podgate binary against a cluster, the
// way an operator would, for the end-to-end tests, the chaos suite and the
// benchmarks. It builds the binary, generates user keys for keys auth,
// starts the process with a chosen environment, waits until it is ready
// and its pool is warm, scrapes its metrics and stops it.
//
// It depends on no testing.T so that the bench runner, a plain program,
// can use it too; the tests wrap it.
package podgatetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/podgate/podgate/internal/testenv/hosttools"
)

// Build compiles ./cmd/podgate into dir and returns the binary's path.
func Build(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "podgate")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/podgate")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building podgate: %w\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot is the directory holding go.mod, found from this source file
// so that callers in any package (or a program run from anywhere in the
// tree) build the same binary.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locating the podgate module: no caller information")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("locating the podgate module: go.mod not found")
		}
		dir = parent
	}
}

// Options says how to run one podgate process.
type Options struct {
	// Bin is the podgate binary (from Build).
	Bin string
	// Kubeconfig and Namespace point podgate at the cluster and the guest
	// namespace it serves.
	Kubeconfig, Namespace string
	// Dir holds the process's files: keys, host key, audit log. It must
	// exist; the caller removes it.
	Dir string
	// Users get an ed25519 key each, authorised in keys auth mode. The
	// default is one user, "alice". A key named "mallory" is always made
	// and never authorised, for tests of refused logins.
	Users []string
	// Env is appended to the defaults below, so a later PODGATE_* wins.
	Env []string
	// WaitIdle is how many idle pods of the default profile to wait for
	// before Start returns; negative means do not wait for the pool.
	WaitIdle int
	// Timeout bounds the wait for readiness (default 2 minutes).
	Timeout time.Duration
}

// Server is one running podgate process.
type Server struct {
	// Dir, Port and MetricsPort are where its files and sockets are.
	Dir, Port, MetricsPort string
	// Keys maps each user (and "mallory") to a private key file.
	Keys map[string]string
	// Cmd is the running process.
	Cmd *exec.Cmd
	// Log collects the process's stdout and stderr.
	Log *SafeBuffer
	// AuditLog is the path of the audit log file.
	AuditLog string

	exited chan struct{} // closed once the process has been waited for
	err    error         // the process's exit error, valid after exited
}

// SafeBuffer is a bytes.Buffer that a process may write while a test
// reads it.
type SafeBuffer struct {
	mu  sync.Mutex // protects b
	b   bytes.Buffer
	tee *os.File // optional copy, e.g. os.Stderr for a live view
}

// Write appends p.
func (s *SafeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tee != nil {
		_, _ = s.tee.Write(p)
	}
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SafeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p, nil
}

// Keygen writes an unencrypted ed25519 key pair at path and path.pub with
// the real ssh-keygen, as a user would.
func Keygen(path string) error {
	keygen, err := hosttools.Path("ssh-keygen")
	if err != nil {
		return err
	}
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", path).CombinedOutput(); err != nil {
		return fmt.Errorf("ssh-keygen: %w: %s", err, out)
	}
	return nil
}

// Start runs podgate with keys auth for opts.Users and waits until it is
// ready and (unless opts.WaitIdle < 0) its default pool holds WaitIdle idle
// pods. On error the process has been stopped.
func Start(ctx context.Context, opts Options) (*Server, error) {
	// Users log in with the real OpenSSH client (SSH): a machine without it
	// fails here, naming the package to install.
	if err := hosttools.Check("ssh", "ssh-keygen"); err != nil {
		return nil, err
	}
	s := &Server{Dir: opts.Dir, Keys: map[string]string{}, Log: &SafeBuffer{}, exited: make(chan struct{})}
	if os.Getenv("PODGATE_TEST_LOG") == "1" {
		s.Log.tee = os.Stderr
	}
	var err error
	if s.Port, err = FreePort(); err != nil {
		return nil, err
	}
	if s.MetricsPort, err = FreePort(); err != nil {
		return nil, err
	}
	keys := filepath.Join(s.Dir, "keys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		return nil, fmt.Errorf("making the keys directory: %w", err)
	}
	users := opts.Users
	if len(users) == 0 {
		users = []string{"alice"}
	}
	for _, u := range append(users, "mallory") {
		s.Keys[u] = filepath.Join(s.Dir, "key-"+u)
		if err := Keygen(s.Keys[u]); err != nil {
			return nil, err
		}
		if u == "mallory" {
			continue
		}
		pub, err := os.ReadFile(s.Keys[u] + ".pub")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(keys, u), pub, 0o600); err != nil {
			return nil, err
		}
	}
	s.AuditLog = filepath.Join(s.Dir, "audit.log")
	s.Cmd = exec.Command(opts.Bin)
	s.Cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"KUBECONFIG=" + opts.Kubeconfig,
		"PODGATE_NAMESPACE=" + opts.Namespace,
		"PODGATE_LISTEN=127.0.0.1:" + s.Port,
		"PODGATE_METRICS_ADDR=127.0.0.1:" + s.MetricsPort,
		// Loopback only; lets a failed leak check read the goroutines.
		"PODGATE_PPROF=true",
		"PODGATE_AUTH_MODE=keys",
		"PODGATE_AUTHORIZED_KEYS=" + keys,
		"PODGATE_REPLICA_ID=e2e",
		"PODGATE_HOST_KEY_PATH=" + filepath.Join(s.Dir, "hostkey"),
		"PODGATE_AUDIT_LOG=" + s.AuditLog,
		"PODGATE_IMAGE=localhost/podgate-debian:local",
		"PODGATE_POOL_MIN=2",
		"PODGATE_ENV_ALLOW=LANG,LC_*",
		"PODGATE_LEASE_DURATION=5s",
		"PODGATE_DRAIN_DEADLINE=10s",
	}, opts.Env...)
	s.Cmd.Stdout, s.Cmd.Stderr = s.Log, s.Log
	if err := s.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting podgate: %w", err)
	}
	go func() { s.err = s.Cmd.Wait(); close(s.exited) }()

	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.waitReady(wctx, opts.WaitIdle); err != nil {
		_ = s.Stop(10 * time.Second)
		return nil, err
	}
	return s, nil
}

// waitReady polls /readyz and the idle gauge: a separate process offers no
// event to watch, so a bounded poll is the one way to wait for it.
func (s *Server) waitReady(ctx context.Context, idle int) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.Ready(ctx) && (idle < 0 || s.IdlePods(ctx, "default") >= float64(max(idle, 1))) {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("podgate exited before it was ready: %v\n%s", s.err, s.Log.String())
		case <-ctx.Done():
			return fmt.Errorf("podgate not ready: %w\n%s", ctx.Err(), s.Log.String())
		case <-tick.C:
		}
	}
}

// Exited is closed when the process has ended.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// Signal sends sig to the process.
func (s *Server) Signal(sig os.Signal) error { return s.Cmd.Process.Signal(sig) }

// Stop interrupts the process (podgate's graceful shutdown) and kills it
// if it has not exited after timeout.
func (s *Server) Stop(timeout time.Duration) error {
	_ = s.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
		return nil
	case <-time.After(timeout):
		_ = s.Cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("podgate did not exit within %v of SIGINT", timeout)
	}
}

// Kill ends the process with SIGKILL, as a crash would, and waits for it.
func (s *Server) Kill() {
	_ = s.Cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// Addr is the SSH address.
func (s *Server) Addr() string { return "127.0.0.1:" + s.Port }

// SSHOptions are the OpenSSH options every client of this server uses with
// the private key file key: no config file, no agent, no host-key
// prompts, batch mode. The port is left out because ssh spells it -p and
// scp and sftp -P.
func SSHOptions(key string, extra ...string) []string {
	return append([]string{"-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "LogLevel=ERROR"}, extra...)
}

// SSH returns a real OpenSSH client command that logs in as login (a user,
// or user+profile) with user's key and runs args.
func (s *Server) SSH(user, login string, args ...string) *exec.Cmd {
	a := append(SSHOptions(s.Keys[user], "-p", s.Port, login+"@127.0.0.1"), args...)
	return exec.Command("ssh", a...)
}
