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

// forward serves a direct-tcpip channel (ssh -L, ssh -D): the attachment
// dials a port of the connection's pod, or a destination the profile's
// forwarding rules allow, from inside the pod. Refusals by policy are
// "administratively prohibited"; everything else is "connect failed".
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
	target, err := att.Dial(ctx, host, port)
	if err != nil {
		reason := ssh.ConnectionFailed
		if errors.Is(err, scheduler.ErrForwardingDisabled) || errors.Is(err, scheduler.ErrForwardDenied) {
			reason = ssh.Prohibited
		}
		c.srv.log.Info("port forwarding refused", "conn_id", c.connID, "host", host, "port", port, "err", err)
		_ = nch.Reject(reason, scheduler.UserMessage(err))
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		target.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	c.srv.log.Info("port forwarding", "conn_id", c.connID, "host", host, "port", port, "to", target.RemoteAddr().String())
	c.active.touch()
	pipe(ctx, ch, target, &c.active)
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
