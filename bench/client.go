package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// missMarker starts the line podgate shows while the user waits for a
// cold pod (scheduler.obtain's progress line). It is written before the
// pod exists, so it always precedes the prompt: a reliable client-side
// signal that the attach was a miss. On a TTY session podgate writes it to
// stdout, otherwise to stderr.
const missMarker = "waiting for a pod"

// isNotice reports whether a write holds only podgate's own lines (its
// progress lines, or a refusal, which starts "podgate: "), which are not
// the prompt. A write may hold several lines: the terminal channel
// coalesces a progress line and the refusal that follows it.
func isNotice(p []byte) bool {
	seen := false
	for _, line := range bytes.Split(p, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if !bytes.HasPrefix(line, []byte(missMarker)) && !bytes.HasPrefix(line, []byte("podgate: ")) {
			return false
		}
		seen = true
	}
	return seen
}

// Timing is one connection's phases, each measured from the start of the
// TCP connect on the same monotonic clock.
type Timing struct {
	// Connect is when the TCP connection was established.
	Connect time.Duration
	// Handshake is when the key exchange finished: the client verifies the
	// host key (HostKeyCallback) as the last step of the exchange, so this
	// is the moment the server's signed exchange reply was checked.
	Handshake time.Duration
	// Auth is when public key authentication succeeded.
	Auth time.Duration
	// Prompt is when the first byte of shell output (the prompt) arrived:
	// the attach latency the user sees.
	Prompt time.Duration
	// Echo is the round trip of `echo ok` typed at the prompt, from the
	// write to the arrival of its output line (not from the TCP connect).
	Echo time.Duration
	// Miss says podgate told the user to wait for a pod (a cold attach).
	Miss bool
}

// Dialer opens benchmark connections to one podgate.
type Dialer struct {
	Addr   string
	User   string
	Signer ssh.Signer
	// Timeout bounds everything up to the prompt.
	Timeout time.Duration
}

// Conn is an open, timed SSH connection.
type Conn struct {
	Client *ssh.Client
	Timing Timing
	start  time.Time
}

// Dial connects and authenticates, recording connect, handshake and auth.
func (d *Dialer) Dial(ctx context.Context) (*Conn, error) {
	start := time.Now()
	var hs time.Time
	cfg := &ssh.ClientConfig{
		User: d.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(d.Signer)},
		HostKeyCallback: func(string, net.Addr, ssh.PublicKey) error {
			hs = time.Now()
			return nil
		},
		Timeout: d.Timeout,
	}
	nd := net.Dialer{Timeout: d.Timeout}
	nc, err := nd.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	c := &Conn{start: start}
	c.Timing.Connect = time.Since(start)
	if d.Timeout > 0 {
		_ = nc.SetDeadline(start.Add(d.Timeout))
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, d.Addr, cfg)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("ssh handshake: %w", err)
	}
	c.Timing.Auth = time.Since(start)
	c.Timing.Handshake = hs.Sub(start)
	_ = nc.SetDeadline(time.Time{})
	c.Client = ssh.NewClient(sc, chans, reqs)
	return c, nil
}

// Close ends the connection.
func (c *Conn) Close() error { return c.Client.Close() }

// Shell is an interactive TTY shell on a Conn.
type Shell struct {
	Session *ssh.Session
	stdin   interface{ Write([]byte) (int, error) }
	Out     *watchBuffer
	Err     *watchBuffer
}

// OpenShell requests a PTY and a login shell and waits for the first byte
// of output, recording Prompt (and Miss) in c.Timing when record is set.
func (c *Conn) OpenShell(ctx context.Context, record bool) (*Shell, error) {
	sess, err := c.Client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("opening a session: %w", err)
	}
	sh := &Shell{Session: sess, Out: newWatchBuffer(), Err: newWatchBuffer()}
	sh.Out.skip = isNotice
	sess.Stdout, sess.Stderr = sh.Out, sh.Err
	in, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, err
	}
	sh.stdin = in
	if err := sess.RequestPty("xterm", 40, 120, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
		sess.Close()
		return nil, fmt.Errorf("requesting a pty: %w", err)
	}
	if err := sess.Shell(); err != nil {
		sess.Close()
		return nil, fmt.Errorf("starting the shell: %w", err)
	}
	// A session that ends before its prompt (podgate refused the login)
	// must end the wait too.
	ended := make(chan struct{})
	go func() {
		_ = sess.Wait()
		close(ended)
	}()
	at, err := sh.Out.waitFirst(ctx, ended)
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("waiting for the prompt: %w (output %q, stderr %q)", err, sh.Out.String(), sh.Err.String())
	}
	if record {
		c.Timing.Prompt = at.Sub(c.start)
		c.Timing.Miss = sh.missed()
	}
	return sh, nil
}

// Echo types `echo ok` and returns the time until its output line came
// back. The terminal echoes the typed line as "echo ok", so only an "ok"
// line not preceded by a space counts (bash may put escape sequences such
// as bracketed-paste mode between the echoed line and the output).
func (sh *Shell) Echo(ctx context.Context) (time.Duration, error) {
	from := sh.Out.Len()
	t0 := time.Now()
	if _, err := sh.stdin.Write([]byte("echo ok\n")); err != nil {
		return 0, fmt.Errorf("typing echo ok: %w", err)
	}
	at, err := sh.Out.waitFor(ctx, from, outputOK)
	if err != nil {
		return 0, fmt.Errorf("waiting for ok: %w (output %q)", err, sh.Out.String())
	}
	return at.Sub(t0), nil
}

// missed reports whether podgate said the user had to wait for a pod.
func (sh *Shell) missed() bool {
	return sh.Out.sawSkipped() || bytes.Contains(sh.Err.Bytes(), []byte(missMarker))
}

// Close ends the shell session.
func (sh *Shell) Close() error { return sh.Session.Close() }

// Attach is one complete timed attach: dial, open a shell, wait for the
// prompt, run `echo ok`. The connection stays open; the caller closes it.
func (d *Dialer) Attach(ctx context.Context) (*Conn, *Shell, error) {
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	c, err := d.Dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	sh, err := c.OpenShell(ctx, true)
	if err != nil {
		c.Close()
		return c, nil, err
	}
	if c.Timing.Echo, err = sh.Echo(ctx); err != nil {
		c.Close()
		return c, nil, err
	}
	// The miss line may in theory race the prompt across the two
	// channel streams; look again now that more time has passed.
	c.Timing.Miss = c.Timing.Miss || sh.missed()
	return c, sh, nil
}

// watchBuffer collects a stream and records when bytes arrive, so waiters
// get the arrival time of the write that satisfied them rather than the
// time they woke up.
type watchBuffer struct {
	// skip, when set, marks writes that do not count as the first byte
	// (podgate's progress lines before the prompt). Set before use.
	skip func([]byte) bool

	mu      sync.Mutex // protects the fields below
	buf     bytes.Buffer
	skipped bool          // a write was skipped
	first   time.Time     // arrival of the first counted byte
	last    time.Time     // arrival of the latest write
	changed chan struct{} // closed and replaced on every write
}

func newWatchBuffer() *watchBuffer { return &watchBuffer{changed: make(chan struct{})} }

// Write appends p and wakes waiters.
func (w *watchBuffer) Write(p []byte) (int, error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.first.IsZero() && len(p) > 0 {
		if w.skip != nil && w.skip(p) {
			w.skipped = true
		} else {
			w.first = now
		}
	}
	w.last = now
	w.buf.Write(p)
	close(w.changed)
	w.changed = make(chan struct{})
	return len(p), nil
}

// Bytes returns a copy of what was written.
func (w *watchBuffer) Bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

func (w *watchBuffer) String() string { return string(w.Bytes()) }

// sawSkipped reports whether a write was skipped.
func (w *watchBuffer) sawSkipped() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.skipped
}

// Len is the number of bytes written so far.
func (w *watchBuffer) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Len()
}

var (
	errClosedEarly  = errors.New("context ended")
	errSessionEnded = errors.New("the session ended before its prompt")
)

// waitFirst returns the arrival time of the first counted byte, or fails
// when ctx ends or ended is closed first.
func (w *watchBuffer) waitFirst(ctx context.Context, ended <-chan struct{}) (time.Time, error) {
	for {
		w.mu.Lock()
		first, ch := w.first, w.changed
		w.mu.Unlock()
		if !first.IsZero() {
			return first, nil
		}
		select {
		case <-ch:
		case <-ended:
			// Output the session's last writes delivered counts still.
			w.mu.Lock()
			first = w.first
			w.mu.Unlock()
			if !first.IsZero() {
				return first, nil
			}
			return time.Time{}, errSessionEnded
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%w: %w", errClosedEarly, ctx.Err())
		}
	}
}

// outputOK reports whether b holds the output line of `echo ok`: "ok\r\n"
// not preceded by a space (which would be the echoed command line).
func outputOK(b []byte) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte("ok\r\n"))
		if j < 0 {
			return false
		}
		if k := i + j; k == 0 || b[k-1] != ' ' {
			return true
		}
		i += j + 1
	}
}

// waitFor returns the arrival time of the write after which match is true
// of the bytes from offset from on.
func (w *watchBuffer) waitFor(ctx context.Context, from int, match func([]byte) bool) (time.Time, error) {
	for {
		w.mu.Lock()
		found := match(w.buf.Bytes()[from:])
		last, ch := w.last, w.changed
		w.mu.Unlock()
		if found {
			return last, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%w: %w", errClosedEarly, ctx.Err())
		}
	}
}
