package sshfront

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/scheduler"
)

// forward serves a direct-tcpip channel (ssh -L, ssh -D) by dialling a port
// inside the connection's pod. Only the pod itself can be reached: the host
// must be a loopback name or the pod's own name.
func (c *conn) forward(ctx context.Context, nch ssh.NewChannel) {
	host, port, err := parseDirectTCPIP(nch.ExtraData())
	if err != nil {
		c.srv.log.Info("refused direct-tcpip", "conn_id", c.connID, "err", err)
		_ = nch.Reject(ssh.ConnectionFailed, "malformed request")
		return
	}
	att, err := c.attach.wait(ctx, func(string) {})
	if err != nil {
		_ = nch.Reject(ssh.ConnectionFailed, scheduler.UserMessage(err))
		return
	}
	if !att.Settings().PortForwarding {
		c.srv.log.Info("refused port forwarding: disabled for profile", "conn_id", c.connID, "port", port)
		_ = nch.Reject(ssh.Prohibited, scheduler.UserMessage(scheduler.ErrForwardingDisabled))
		return
	}
	if !forwardHostAllowed(host, att) {
		c.srv.log.Info("refused port forwarding to other host", "conn_id", c.connID, "host", host, "port", port)
		_ = nch.Reject(ssh.Prohibited, "podgate: only ports inside your pod (localhost) can be forwarded")
		return
	}
	target, err := att.DialTCP(ctx, port)
	if err != nil {
		c.srv.log.Info("port forwarding dial failed", "conn_id", c.connID, "port", port, "err", err)
		reason := ssh.ConnectionFailed
		if errors.Is(err, scheduler.ErrForwardingDisabled) {
			reason = ssh.Prohibited
		}
		_ = nch.Reject(reason, "podgate: connection refused")
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		target.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	c.srv.log.Info("port forwarding", "conn_id", c.connID, "port", port)
	c.active.touch()
	pipe(ctx, ch, target, &c.active)
}

func forwardHostAllowed(host string, att scheduler.Attachment) bool {
	switch host {
	case "localhost", "127.0.0.1", "::1":
		return true
	}
	pn, ok := att.(podNamer)
	return ok && host != "" && host == pn.PodName()
}

// closeWriter is implemented by TCP connections and SSH channels.
type closeWriter interface {
	CloseWrite() error
}

// pipe copies both ways, passing each side's EOF on as a half-close, until
// both directions are done or ctx ends. Every byte counts as activity on
// the connection, so a forward in use keeps it from the idle timeout.
func pipe(ctx context.Context, ch ssh.Channel, target net.Conn, active *activity) {
	stop := context.AfterFunc(ctx, func() {
		ch.Close()
		target.Close()
	})
	defer stop()
	var wg sync.WaitGroup
	half := func(dst io.Writer, src io.Reader) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok {
			_ = cw.CloseWrite()
		}
	}
	wg.Add(2)
	go half(target, activityReader{r: ch, active: active})
	go half(ch, activityReader{r: target, active: active})
	wg.Wait()
	ch.Close()
	target.Close()
}
