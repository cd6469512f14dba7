package kube

import (
	"context"
	"errors"
	"io"
	"sync"

	"k8s.io/client-go/tools/remotecommand"

	"github.com/podgate/podgate/scheduler"
)

// spdyConn runs one exec over a client-go executor. Exec streams to the
// API server no longer take it (they take podgate's own SPDY client,
// spdyexec.go); it serves Executor.newStream, through which tests stand in
// for the API server with a remotecommand.Executor. client-go pulls stdin
// from a reader, so writes go through a small buffered pipe; resizes
// through a size queue. It implements execConn.
type spdyConn struct {
	ex     remotecommand.Executor
	tty    bool
	ctx    context.Context
	cancel context.CancelFunc
	stdin  *bufPipe
	sizes  *sizeQueue // nil without a terminal
	done   chan struct{}
}

var _ execConn = (*spdyConn)(nil)

func newSPDYConn(ex remotecommand.Executor, tty bool) *spdyConn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &spdyConn{ex: ex, tty: tty, ctx: ctx, cancel: cancel, stdin: newBufPipe(), done: make(chan struct{})}
	if tty {
		c.sizes = &sizeQueue{ch: make(chan remotecommand.TerminalSize, 1), done: c.done}
	}
	return c
}

func (c *spdyConn) serve(stdout, stderr io.Writer) error {
	defer close(c.done)
	opts := remotecommand.StreamOptions{Stdin: c.stdin, Stdout: stdout, Tty: c.tty}
	if c.tty {
		opts.TerminalSizeQueue = c.sizes
	} else {
		opts.Stderr = stderr
	}
	err := c.ex.StreamWithContext(c.ctx, opts)
	// Unblock anyone still writing stdin.
	c.stdin.closeWithError(errStreamEnded)
	return err
}

func (c *spdyConn) writeStdin(p []byte) error { return c.stdin.write(p) }
func (c *spdyConn) closeStdin() error         { c.stdin.closeWithError(io.EOF); return nil }

func (c *spdyConn) resize(size scheduler.WindowSize) error {
	if c.sizes == nil {
		return errors.New("resizing a stream without a terminal")
	}
	c.sizes.push(size)
	return nil
}

func (c *spdyConn) abort() { c.cancel() }

// bufPipe is a pipe whose writes return as soon as their bytes are queued,
// up to maxQueued bytes, so that a small write (the hello, a spec) never
// waits for the stream to open; larger ones wait for the reader.
type bufPipe struct {
	mu   sync.Mutex // protects buf and err
	more *sync.Cond // signalled when buf or err change
	buf  []byte
	err  error // set once closed: io.EOF for a clean close
}

// maxQueued bounds a bufPipe's queue.
const maxQueued = 64 << 10

func newBufPipe() *bufPipe {
	p := &bufPipe{}
	p.more = sync.NewCond(&p.mu)
	return p
}

func (p *bufPipe) write(b []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) > 0 && len(p.buf)+len(b) > maxQueued && p.err == nil {
		p.more.Wait()
	}
	if p.err != nil {
		return p.err
	}
	p.buf = append(p.buf, b...)
	p.more.Broadcast()
	return nil
}

// Read is client-go's side.
func (p *bufPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && p.err == nil {
		p.more.Wait()
	}
	if len(p.buf) == 0 {
		return 0, p.err
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	p.more.Broadcast()
	return n, nil
}

func (p *bufPipe) closeWithError(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
	p.more.Broadcast()
}
