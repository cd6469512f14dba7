package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podgate/podgate/internal/testenv/hosttools"
	"github.com/podgate/podgate/scheduler"
)

// These tests run the relay program with the host's real /bin/sh, bash,
// cat and getent, as the pod would, against real TCP servers on loopback;
// only the exec transport is replaced by a local process. The pod side is
// covered on the cluster by the e2e forwarding test.

// localRun runs a command as a local process with PATH set to path. As the
// executor does, it hangs the process up when ctx ends.
func localRun(path string) runFunc {
	return func(ctx context.Context, cmd scheduler.Command) (scheduler.ExitStatus, error) {
		p := exec.CommandContext(ctx, cmd.Argv[0], cmd.Argv[1:]...)
		p.Env = []string{"PATH=" + path, "LC_ALL=C"}
		p.Stdout, p.Stderr = cmd.Stdout, cmd.Stderr
		p.Cancel = func() error { return p.Process.Signal(syscall.SIGHUP) }
		p.WaitDelay = 5 * time.Second
		// As the executor's, the stdin copy is not waited for: a Read of
		// the caller's stdin cannot be interrupted.
		in, err := p.StdinPipe()
		if err != nil {
			return scheduler.ExitStatus{}, err
		}
		if err := p.Start(); err != nil {
			return scheduler.ExitStatus{}, err
		}
		go func() {
			_, _ = io.Copy(in, cmd.Stdin)
			in.Close()
		}()
		// Signals are delivered as the executor delivers them.
		exited := make(chan struct{})
		defer close(exited)
		go func() {
			for {
				select {
				case name := <-cmd.Signals:
					if name == "TERM" {
						_ = p.Process.Signal(syscall.SIGTERM)
					}
				case <-exited:
					return
				}
			}
		}()
		err = p.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			return scheduler.ExitStatus{Code: ee.ExitCode()}, nil
		}
		if ctx.Err() != nil {
			return scheduler.ExitStatus{}, ctx.Err()
		}
		return scheduler.ExitStatus{}, err
	}
}

// relayTools are the host tools the relay runs, as the pod would.
var relayTools = []string{"sh", "bash", "cat", "getent"}

// toolDir makes a PATH directory holding only the named host tools.
func toolDir(t *testing.T, tools ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range tools {
		p, err := hosttools.Path(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// hostPath is a PATH holding the relay's tools.
func hostPath(t *testing.T) string {
	t.Helper()
	hosttools.Require(t, relayTools...)
	return toolDir(t, relayTools...)
}

// server is a loopback TCP server that serves each connection with handle
// and counts the connections it accepted.
type server struct {
	ln       net.Listener
	accepted atomic.Int32
	closed   chan struct{} // one value per connection whose handler returned
}

func newServer(t *testing.T, handle func(net.Conn)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, closed: make(chan struct{}, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			go func() {
				defer func() { s.closed <- struct{}{} }()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return s
}

func (s *server) port() uint16 {
	return uint16(s.ln.Addr().(*net.TCPAddr).Port)
}

// upperEcho answers each read with the same bytes in upper case until EOF.
func upperEcho(c net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(bytes.ToUpper(buf[:n])); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func allowAll(addrs []netip.Addr) (netip.Addr, error) {
	if len(addrs) == 0 {
		return netip.Addr{}, scheduler.ErrHostNotFound
	}
	return addrs[0], nil
}

func TestRelayToAddress(t *testing.T) {
	srv := newServer(t, upperEcho)
	c, err := dialRelay(context.Background(), localRun(hostPath(t)), "127.0.0.1", srv.port(), allowAll)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.RemoteAddr().String(), srv.ln.Addr().String(); got != want {
		t.Errorf("RemoteAddr %s, want %s", got, want)
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "HELLO" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Closing the relay hangs it up: the destination sees the end.
	<-srv.closed
}

// TestRelayBulk moves 8 MiB each way and checks it arrives intact, and that
// the relay ends with EOF when the destination closes.
func TestRelayBulk(t *testing.T) {
	data := make([]byte, 8<<20)
	rand.Read(data)
	want := sha256.Sum256(data)
	got := make(chan [32]byte, 1)
	srv := newServer(t, func(c net.Conn) {
		// Read everything the client sends (it is a known size, as the
		// relay cannot pass a half-close on), then send it back.
		in := make([]byte, len(data))
		if _, err := io.ReadFull(c, in); err != nil {
			return
		}
		got <- sha256.Sum256(in)
		_, _ = c.Write(in)
	})
	c, err := dialRelay(context.Background(), localRun(hostPath(t)), "127.0.0.1", srv.port(), allowAll)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() { _, _ = c.Write(data) }()
	back, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading back: %v after %d bytes", err, len(back))
	}
	if <-got != want || sha256.Sum256(back) != want {
		t.Errorf("data changed in transit (%d bytes back)", len(back))
	}
}

// TestRelayDestinationTalksFirst: a server that writes on accept cannot
// overtake the relay's "connected" line.
func TestRelayDestinationTalksFirst(t *testing.T) {
	srv := newServer(t, func(c net.Conn) {
		_, _ = io.WriteString(c, "SSH-2.0-banner\r\n")
		_, _ = io.Copy(io.Discard, c)
	})
	c, err := dialRelay(context.Background(), localRun(hostPath(t)), "127.0.0.1", srv.port(), allowAll)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line := make([]byte, len("SSH-2.0-banner\r\n"))
	if _, err := io.ReadFull(c, line); err != nil || string(line) != "SSH-2.0-banner\r\n" {
		t.Fatalf("read %q, %v", line, err)
	}
}

// TestRelayResolvesInPod: a name is resolved by the pod's getent, the
// picker sees every address, and the relay connects to the one it chose.
func TestRelayResolvesInPod(t *testing.T) {
	srv := newServer(t, upperEcho)
	var seen []netip.Addr
	pick := func(addrs []netip.Addr) (netip.Addr, error) {
		seen = addrs
		for _, a := range addrs {
			if a.Is4() {
				return a, nil
			}
		}
		return netip.Addr{}, scheduler.ErrForwardDenied
	}
	c, err := dialRelay(context.Background(), localRun(hostPath(t)), "localhost", srv.port(), pick)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !slices.Contains(seen, netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("picker saw %v, want 127.0.0.1 among them", seen)
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "X" {
		t.Fatalf("read %q, %v", b, err)
	}
}

// TestRelayRefusedConnectsNowhere: when the picker refuses, the relay never
// connects, whether the host was an address or a name.
func TestRelayRefusedConnectsNowhere(t *testing.T) {
	srv := newServer(t, upperEcho)
	deny := func([]netip.Addr) (netip.Addr, error) {
		return netip.Addr{}, scheduler.ErrForwardDenied
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		if _, err := dialRelay(context.Background(), localRun(hostPath(t)), host, srv.port(), deny); !errors.Is(err, scheduler.ErrForwardDenied) {
			t.Errorf("%s: %v, want ErrForwardDenied", host, err)
		}
	}
	if n := srv.accepted.Load(); n != 0 {
		t.Errorf("server accepted %d connections", n)
	}
}

func TestRelayFailures(t *testing.T) {
	closedPort := func() uint16 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return uint16(ln.Addr().(*net.TCPAddr).Port)
	}()
	full := hostPath(t)
	noBash := toolDir(t, "cat")
	noGetent := toolDir(t, "bash", "cat")
	for _, tc := range []struct {
		name, path, host string
		err              error
		msg              string
	}{
		{"connection refused", full, "127.0.0.1", scheduler.ErrConnectFailed, "podgate: Connection refused"},
		{"unknown name", full, "no-such-host.invalid", scheduler.ErrHostNotFound, "podgate: host name not found"},
		{"no bash", noBash, "127.0.0.1", scheduler.ErrRelayUnavailable, "needs bash"},
		{"no getent", noGetent, "localhost", scheduler.ErrRelayUnavailable, "getent"},
		{"flag-like host", full, "-s", scheduler.ErrForwardDenied, "not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dialRelay(context.Background(), localRun(tc.path), tc.host, closedPort, allowAll)
			if !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
			if msg := scheduler.UserMessage(err); !strings.Contains(msg, tc.msg) {
				t.Errorf("user message %q, want it to contain %q", msg, tc.msg)
			}
		})
	}
	// Without getent an address still works: only names need it.
	srv := newServer(t, upperEcho)
	c, err := dialRelay(context.Background(), localRun(noGetent), "127.0.0.1", srv.port(), allowAll)
	if err != nil {
		t.Fatalf("address without getent: %v", err)
	}
	c.Close()
}

// TestRelayCancelledSetup: a cancelled setup leaves nothing running.
func TestRelayCancelledSetup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	block := make(chan struct{})
	pick := func(addrs []netip.Addr) (netip.Addr, error) {
		cancel()
		<-block
		return addrs[0], nil
	}
	close(block)
	srv := newServer(t, upperEcho)
	_, err := dialRelay(ctx, localRun(hostPath(t)), "localhost", srv.port(), pick)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// TestRelayCloseAtOnce: a relay closed the moment it connected, before it
// may have set up its copies, still leaves nothing holding the connection:
// the destination sees it end.
func TestRelayCloseAtOnce(t *testing.T) {
	srv := newServer(t, upperEcho)
	for range 5 {
		c, err := dialRelay(context.Background(), localRun(hostPath(t)), "127.0.0.1", srv.port(), allowAll)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		<-srv.closed
	}
}
