package kube

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podgate/podgate/scheduler"
)

// The relay: ssh -L and -D to destinations other than the user's own pod.
//
// The connection is opened by a small bash program exec'd into the pod, so
// that it leaves from the pod's network namespace with the pod's identity,
// and NetworkPolicy applies to it exactly as to anything the user runs
// there; podgate itself never connects to a user's destination. The
// program runs under the usual wrapper (wrapper.go) through Exec.
//
// Protocol, on the relay's stdout, one line per message before any data:
//
//	PODGATE-RELAY addr A        (resolve mode) an address the pod resolved
//	PODGATE-RELAY resolved      (resolve mode) end of the list; the relay
//	                            then reads one line on stdin: the address
//	                            to connect to, or an empty line to give up
//	PODGATE-RELAY connected     the TCP connection is open; every byte
//	                            after this line is the destination's
//	PODGATE-RELAY error KIND    no-bash, no-getent or connect; the relay
//	                            exits (bash's own message is on stderr)
//
// The control lines share stdout with the data, rather than using stderr,
// so that they are ordered with it: a destination that talks first cannot
// overtake "connected". In resolve mode the address connected to is the one
// podgate picked from the pod's own answer, passed back as a literal, so the
// name is resolved exactly once and its answer is what the policy checked.
//
// What an image needs: /bin/sh (for the wrapper), bash (its /dev/tcp does
// the connecting), cat, and getent for host names (glibc's or musl's; not
// in BusyBox). An image without them gets a clear refusal, never a hang.
//
// Limits: bash cannot half-close a socket, so a client's EOF (ssh -L with
// a client that shuts down its sending side) is not passed on; the
// connection ends when either side closes it completely.

// relayPrefix starts every control line.
const relayPrefix = "PODGATE-RELAY "

// Relay error kinds, as the program prints them.
const (
	relayNoBash   = "no-bash"
	relayNoGetent = "no-getent"
	relayConnect  = "connect"
)

// errRelayEnded is what writes to a relay that has exited fail with.
var errRelayEnded = errors.New("relay ended")

// relaySetupTimeout bounds resolving and connecting, which bash does not
// bound itself (a silently dropped SYN takes the kernel about two minutes).
const relaySetupTimeout = 20 * time.Second

// maxRelayAddrs bounds the address list read from the pod, and
// maxRelayLine one control line.
const (
	maxRelayAddrs = 64
	maxRelayLine  = 256
)

// relayLauncher checks for bash, so that an image without it is reported
// as such rather than as exit status 127, and starts the relay under it.
const relayLauncher = `command -v bash >/dev/null 2>&1 || { printf '` + relayPrefix + `error ` + relayNoBash + `\n'; exit 3; }
exec bash -c "$0" podgate-relay "$@"
`

// relayScript is the relay proper; $1 is the host, $2 the port, $3 the
// mode (resolve or connect). In connect mode the host is an address.
//
// A HUP or TERM (Close, or the executor's hang-up) must never leave a copy
// behind. Until both copies run and their PIDs are known, the trap only
// notes the signal, and the script checks the note before each step (an
// interrupted read returns at once); from then on the trap ends both
// copies. bash defers a trap until a foreground command ends, hence the
// copies run in the background and the script waits with the wait
// builtin, which a trapped signal interrupts.
const relayScript = `say() { printf '` + relayPrefix + `%s\n' "$*"; }
stop= down= up=
trap 'stop=1' HUP TERM
host=$1 port=$2 mode=$3 ip=$1
if [ "$mode" = resolve ]; then
	command -v getent >/dev/null 2>&1 || { say error ` + relayNoGetent + `; exit 3; }
	getent ahosts "$host" | while read -r a kind _; do
		if [ "$kind" = STREAM ]; then say addr "$a"; fi
	done
	say resolved
	IFS= read -r ip || exit 0
	[ -n "$ip" ] && [ -z "$stop" ] || exit 0
fi
if ! exec 3<>"/dev/tcp/$ip/$port"; then say error ` + relayConnect + `; exit 4; fi
[ -z "$stop" ] || exit 0
say connected
cat <&3 & down=$!
cat <&0 >&3 & up=$!
exec 3<&-
trap 'kill $down $up 2>/dev/null; exit 0' HUP TERM
[ -z "$stop" ] || { kill $down $up 2>/dev/null; exit 0; }
wait "$down"
kill "$up" 2>/dev/null
exit 0
`

// relayArgv is the exec argv of one relay.
func relayArgv(host string, port uint16, resolve bool) []string {
	mode := "connect"
	if resolve {
		mode = "resolve"
	}
	return []string{"/bin/sh", "-c", relayLauncher, relayScript, host, strconv.Itoa(int(port)), mode}
}

// runFunc runs a command in the pod; Exec in production, a local process in
// the relay's unit tests.
type runFunc func(ctx context.Context, cmd scheduler.Command) (scheduler.ExitStatus, error)

// Relay opens a connection to host:port from inside the pod; see
// scheduler.Execer and the protocol above.
func (e *Executor) Relay(ctx context.Context, pod scheduler.PodRef, host string, port uint16, pick func([]netip.Addr) (netip.Addr, error)) (net.Conn, error) {
	run := func(ctx context.Context, cmd scheduler.Command) (scheduler.ExitStatus, error) {
		return e.Exec(ctx, pod, cmd)
	}
	c, err := dialRelay(ctx, run, host, port, pick)
	if err != nil {
		return nil, fmt.Errorf("relay in pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	c.local = forwardAddr("relay in " + pod.Namespace + "/" + pod.Name)
	return c, nil
}

// dialRelay starts the relay with run and takes it through resolution (for
// a name) and the connect. On error nothing is left running.
func dialRelay(ctx context.Context, run runFunc, host string, port uint16, pick func([]netip.Addr) (netip.Addr, error)) (*relayConn, error) {
	target, literal := netip.Addr{}, false
	if a, err := netip.ParseAddr(host); err == nil {
		if target, err = pick([]netip.Addr{a}); err != nil {
			return nil, err
		}
		host, literal = target.String(), true
	} else if host == "" || strings.HasPrefix(host, "-") {
		return nil, fmt.Errorf("host %q: %w", host, scheduler.ErrForwardDenied)
	}
	c := startRelay(run, relayArgv(host, port, !literal))
	ctx, cancel := context.WithTimeout(ctx, relaySetupTimeout)
	defer cancel()
	// A read of the relay's output cannot be interrupted; closing the
	// relay can, so a timeout or cancellation closes it.
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	fail := func(err error) (*relayConn, error) {
		_ = c.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
			if errors.Is(err, context.DeadlineExceeded) {
				err = &scheduler.Refusal{Reason: "Connection timed out", Err: fmt.Errorf("relay setup took over %v: %w", relaySetupTimeout, scheduler.ErrConnectFailed)}
			}
		}
		return nil, err
	}
	if !literal {
		addrs, err := c.readAddrs()
		if err != nil {
			return fail(err)
		}
		if target, err = pick(addrs); err != nil {
			// An empty line makes the relay exit without connecting.
			_, _ = io.WriteString(c.stdinW, "\n")
			return fail(err)
		}
		if _, err := io.WriteString(c.stdinW, target.String()+"\n"); err != nil {
			return fail(c.ended(fmt.Errorf("sending the address: %w", err)))
		}
	}
	if err := c.awaitConnected(); err != nil {
		return fail(err)
	}
	if !stop() {
		// ctx ended just now and is closing the relay.
		return fail(ctx.Err())
	}
	c.remote = net.TCPAddrFromAddrPort(netip.AddrPortFrom(target, port))
	return c, nil
}

// relayConn is one relay as a net.Conn: writes go to its stdin, reads come
// from its stdout after the control lines.
type relayConn struct {
	stdinR  *io.PipeReader
	stdinW  *io.PipeWriter
	stdoutR *io.PipeReader
	out     *bufio.Reader // over stdoutR; control lines, then data
	diag    *syncBuffer   // the relay's stderr, for error messages

	signals chan string        // to the relay; Close sends TERM
	cancel  context.CancelFunc // tears the exec down
	done    chan struct{}      // closed when the exec has returned
	status  scheduler.ExitStatus
	err     error // the exec's error; status and err are valid after done

	local  net.Addr
	remote net.Addr

	closeOnce sync.Once
}

var _ net.Conn = (*relayConn)(nil)

// startRelay runs argv in the background.
func startRelay(run runFunc, argv []string) *relayConn {
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	c := &relayConn{
		stdinR: stdinR, stdinW: stdinW, stdoutR: stdoutR,
		out:     bufio.NewReaderSize(stdoutR, 32<<10),
		diag:    &syncBuffer{},
		signals: make(chan string, 1),
		cancel:  cancel, done: make(chan struct{}),
		local: forwardAddr("relay"),
	}
	go func() {
		defer close(c.done)
		c.status, c.err = run(ctx, scheduler.Command{Argv: argv, Stdin: stdinR, Stdout: stdoutW, Stderr: c.diag, Signals: c.signals})
		// EOF for the reader once the relay has ended on its own; its
		// failure otherwise. Writes fail from now on: nothing reads
		// the relay's stdin any more.
		stdoutW.CloseWithError(c.err)
		stdinR.CloseWithError(errRelayEnded)
	}()
	return c
}

// readLine reads one control line.
func (c *relayConn) readLine() (string, error) {
	line, err := c.out.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxRelayLine {
		return "", fmt.Errorf("relay protocol: line longer than %d bytes", maxRelayLine)
	}
	if err != nil {
		return "", c.ended(err)
	}
	text, ok := strings.CutPrefix(strings.TrimSuffix(string(line), "\n"), relayPrefix)
	if !ok {
		return "", fmt.Errorf("relay protocol: unexpected output %q", line)
	}
	if kind, isErr := strings.CutPrefix(text, "error "); isErr {
		return "", c.failure(kind)
	}
	return text, nil
}

// readAddrs reads the resolved address list.
func (c *relayConn) readAddrs() ([]netip.Addr, error) {
	var addrs []netip.Addr
	for {
		line, err := c.readLine()
		if err != nil {
			return nil, err
		}
		if line == "resolved" {
			return addrs, nil
		}
		text, ok := strings.CutPrefix(line, "addr ")
		a, perr := netip.ParseAddr(text)
		if !ok || perr != nil {
			return nil, fmt.Errorf("relay protocol: unexpected line %q", line)
		}
		if len(addrs) == maxRelayAddrs {
			return nil, fmt.Errorf("relay protocol: more than %d addresses", maxRelayAddrs)
		}
		addrs = append(addrs, a)
	}
}

// awaitConnected reads the connect result.
func (c *relayConn) awaitConnected() error {
	line, err := c.readLine()
	if err != nil {
		return err
	}
	if line != "connected" {
		return fmt.Errorf("relay protocol: unexpected line %q", line)
	}
	return nil
}

// failure turns an error line into an error wrapping its sentinel, once
// the relay has exited (so its stderr is complete).
func (c *relayConn) failure(kind string) error {
	<-c.done
	detail := strings.TrimSpace(c.diag.String())
	switch kind {
	case relayNoBash:
		return fmt.Errorf("the image has no bash: %w", scheduler.ErrRelayUnavailable)
	case relayNoGetent:
		return fmt.Errorf("the image has no getent to resolve host names: %w", scheduler.ErrRelayUnavailable)
	case relayConnect:
		err := fmt.Errorf("%s: %w", detail, scheduler.ErrConnectFailed)
		if reason := connectReason(detail); reason != "" {
			return &scheduler.Refusal{Reason: reason, Err: err}
		}
		return err
	}
	return fmt.Errorf("relay protocol: unknown error %q (stderr %q)", kind, detail)
}

// ended explains a relay whose output ended before the expected line.
func (c *relayConn) ended(readErr error) error {
	<-c.done
	if c.err != nil {
		return fmt.Errorf("relay ended: %w", c.err)
	}
	return fmt.Errorf("relay exited with status %d before connecting (%v; stderr %q)", c.status.Code, readErr, strings.TrimSpace(c.diag.String()))
}

// connectReason picks the system's reason out of bash's connect error, from
// a fixed list, so that nothing else of the pod's output reaches the user.
func connectReason(detail string) string {
	for _, r := range []string{"Connection refused", "Connection timed out", "No route to host", "Network is unreachable", "Connection reset by peer"} {
		if strings.Contains(detail, r) {
			return r
		}
	}
	return ""
}

// Read reads what the destination sent.
func (c *relayConn) Read(p []byte) (int, error) { return c.out.Read(p) }

// Write sends to the destination.
func (c *relayConn) Write(p []byte) (int, error) { return c.stdinW.Write(p) }

// CloseWrite ends the relay's stdin; see the half-close note above.
func (c *relayConn) CloseWrite() error { return c.stdinW.Close() }

// relayCloseTimeout bounds how long Close waits for a terminated relay to
// exit before it tears its stream down.
const relayCloseTimeout = 5 * time.Second

// Close ends the relay and waits for its exec to return. It asks first: a
// TERM makes the relay's trap end both copies and exit, so the exec ends as
// any command does (tearing a stream down instead makes client-go log
// errors about the broken connection); what the destination still sends
// meanwhile is discarded. A relay that does not exit in time, or a setup
// still under way, is torn down.
func (c *relayConn) Close() error {
	c.closeOnce.Do(func() {
		defer c.cancel()
		select {
		case c.signals <- "TERM":
		default:
		}
		c.stdinW.CloseWithError(net.ErrClosed)
		go func() { _, _ = io.Copy(io.Discard, c.stdoutR) }()
		timer := time.NewTimer(relayCloseTimeout)
		defer timer.Stop()
		select {
		case <-c.done:
		case <-timer.C:
			c.cancel()
			<-c.done
		}
		c.stdinR.CloseWithError(net.ErrClosed)
	})
	return nil
}

func (c *relayConn) LocalAddr() net.Addr  { return c.local }
func (c *relayConn) RemoteAddr() net.Addr { return c.remote }

func (c *relayConn) SetDeadline(time.Time) error      { return errNoDeadlines }
func (c *relayConn) SetReadDeadline(time.Time) error  { return errNoDeadlines }
func (c *relayConn) SetWriteDeadline(time.Time) error { return errNoDeadlines }

// syncBuffer keeps the first maxDiagnostic bytes written to it, safely for
// a writer and a reader in different goroutines.
type syncBuffer struct {
	mu  sync.Mutex // protects buf
	buf limitedBuffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
