package sshfront

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/scheduler"
	"github.com/podgate/podgate/sshfront/auth"
)

// maxSessionsPerConn bounds session channels open at once on a connection,
// like OpenSSH's MaxSessions: in session mode each one costs a pod.
const maxSessionsPerConn = 10

// failureGrace is how long a client that was told why it cannot have a pod
// may keep the connection before the server closes it.
const failureGrace = 5 * time.Second

// errThrottled marks attempts refused because the source address failed
// too often; the client sees an ordinary failure.
var errThrottled = errors.New("source address throttled")

// conn is one SSH connection from accept to close.
//
// The auth callbacks run one at a time on the handshake goroutine and are
// the only users of preAuthAt and loggedBadLogin. id, auth, sconn and att
// are set before any session or forward goroutine starts and are read-only
// after.
type conn struct {
	srv        *Server
	nc         net.Conn
	host       string
	acceptedAt time.Time
	connID     string

	preAuthAt      time.Time
	loggedBadLogin bool
	// authFailures and lastLogin describe refused attempts, for the audit
	// line of a connection that never authenticated.
	authFailures int
	lastLogin    string

	id     scheduler.Identity
	auth   authResult // what authentication decided, restrictions included
	sconn  *ssh.ServerConn
	attach *attachState
	// wg tracks session, forward, keepalive and request goroutines.
	wg sync.WaitGroup

	// failureShown is closed once a session has shown the user why the
	// attachment failed, so the connection can be closed.
	failureShown     chan struct{}
	failureShownOnce sync.Once

	// active is when session I/O or forwarded traffic last moved, for the
	// idle timeout (see limits.go).
	active activity
	// sessionsLive counts sessions not yet ended; Add only under mu while
	// cutReason is empty, so that cutAll's Wait never races an Add.
	sessionsLive sync.WaitGroup

	// mu protects the following.
	mu       sync.Mutex
	sessions map[*session]struct{}
	nSession int // sessions started so far, for numbering
	// cutReason is set when a limit ended the connection; no session
	// starts after that.
	cutReason string
}

// handle runs one accepted connection to its end.
func (s *Server) handle(ctx context.Context, nc net.Conn, host string, acceptedAt time.Time) {
	c := &conn{
		srv:          s,
		nc:           nc,
		host:         host,
		acceptedAt:   acceptedAt,
		connID:       newConnID(),
		attach:       newAttachState(),
		failureShown: make(chan struct{}),
		sessions:     make(map[*session]struct{}),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopHard := context.AfterFunc(s.hardStop, cancel)
	defer stopHard()
	stopClose := context.AfterFunc(ctx, func() { nc.Close() })
	defer stopClose()

	// The deadline covers key exchange and authentication; a client that
	// stalls anywhere before it is authenticated is cut at it.
	_ = nc.SetDeadline(acceptedAt.Add(s.cfg.HandshakeTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(nc, c.serverConfig(ctx))
	<-s.preauth
	if err != nil {
		s.log.Debug("ssh handshake failed", "conn_id", c.connID, "remote", nc.RemoteAddr().String(), "err", err)
		nc.Close()
		if c.authFailures > 0 {
			// Refused logins are audited once per connection (not per
			// attempt, so a guessing client cannot flood the trail).
			s.audit.Info("connection", "conn_id", c.connID, "authenticated", false, "login", c.lastLogin,
				"remote", nc.RemoteAddr().String(), "start", acceptedAt, "duration", time.Since(acceptedAt),
				"auth_failures", c.authFailures)
		}
		return
	}
	_ = nc.SetDeadline(time.Time{})
	if !c.preAuthAt.IsZero() {
		s.metrics.phase.WithLabelValues("auth").Observe(time.Since(c.preAuthAt).Seconds())
	}
	s.throttle.Succeeded(host)
	c.serve(ctx, cancel, sconn, chans, reqs)
}

// serverConfig returns the server's SSH configuration with callbacks bound
// to this connection.
func (c *conn) serverConfig(ctx context.Context) *ssh.ServerConfig {
	conf := c.srv.sshConf
	conf.PreAuthConnCallback = func(ssh.ServerPreAuthConn) {
		c.preAuthAt = time.Now()
		c.srv.metrics.phase.WithLabelValues("handshake").Observe(c.preAuthAt.Sub(c.acceptedAt).Seconds())
	}
	conf.AuthLogCallback = c.authLog
	conf.BannerCallback = func(meta ssh.ConnMetadata) string { return c.srv.banner(meta.User()) }
	if pk, certs := c.srv.authn.PublicKey, c.srv.authn.Certificate; pk != nil || certs != nil {
		conf.PublicKeyCallback = func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			req, err := c.authRequest(meta)
			if err != nil {
				return nil, err
			}
			if cert, ok := key.(*ssh.Certificate); ok && certs != nil {
				d, err := certs.Certificate(ctx, req, meta, cert)
				return c.permissions(d, ssh.FingerprintSHA256(cert.Key), "publickey", err)
			}
			if pk == nil {
				return nil, auth.ErrDenied
			}
			d, err := pk.PublicKey(ctx, req, key)
			return c.permissions(d, ssh.FingerprintSHA256(key), "publickey", err)
		}
	}
	if pw := c.srv.authn.Password; pw != nil {
		conf.PasswordCallback = func(meta ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
			req, err := c.authRequest(meta)
			if err != nil {
				return nil, err
			}
			d, err := pw.Password(ctx, req, password)
			return c.permissions(d, "", "password", err)
		}
	}
	return &conf
}

// authRequest checks the source address and the login name before any
// credential is looked at.
func (c *conn) authRequest(meta ssh.ConnMetadata) (auth.Request, error) {
	if !c.srv.throttle.Allow(c.host) {
		return auth.Request{}, errThrottled
	}
	user, profile, err := auth.ParseLogin(meta.User())
	if err != nil {
		if !c.loggedBadLogin {
			c.loggedBadLogin = true
			c.srv.metrics.refused.WithLabelValues(refusedBadLogin).Inc()
			c.srv.log.Warn("refused login name", "conn_id", c.connID, "remote", c.nc.RemoteAddr().String(), "login", meta.User(), "err", err)
		}
		return auth.Request{}, err
	}
	return auth.Request{
		User:          user,
		Profile:       profile,
		RemoteAddr:    meta.RemoteAddr().String(),
		ConnID:        c.connID,
		ClientVersion: string(meta.ClientVersion()),
	}, nil
}

// permissions turns an authenticator's answer into the SSH library's.
func (c *conn) permissions(d auth.Decision, keyFP, method string, err error) (*ssh.Permissions, error) {
	if err != nil {
		if !errors.Is(err, auth.ErrDenied) {
			c.srv.log.Error("authentication source failed", "conn_id", c.connID, "method", method, "err", err)
		}
		return nil, err
	}
	return newPermissions(d, keyFP), nil
}

// authLog counts attempts and feeds failures to the throttle. It sees
// failures the credential callbacks cannot, such as a bad signature.
func (c *conn) authLog(meta ssh.ConnMetadata, method string, err error) {
	if method == "none" {
		return
	}
	result := "success"
	switch {
	case err == nil:
	case errors.Is(err, errThrottled):
		result = "throttled"
		c.srv.metrics.refused.WithLabelValues(refusedThrottled).Inc()
	default:
		result = "failure"
		c.srv.throttle.Failed(c.host)
	}
	if err != nil {
		c.authFailures++
		c.lastLogin = auditLogin(meta.User())
	}
	c.srv.metrics.authAttempts.WithLabelValues(method, result).Inc()
	c.srv.log.Debug("ssh auth attempt", "conn_id", c.connID, "login", meta.User(), "method", method, "result", result)
}

// serve runs an authenticated connection: it starts the attachment, then
// dispatches channels until the client goes away.
func (c *conn) serve(ctx context.Context, cancel context.CancelFunc, sconn *ssh.ServerConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	defer sconn.Close()
	res, ok := resultOf(sconn.Permissions)
	if !ok {
		c.srv.log.Error("authenticated connection without an auth decision", "conn_id", c.connID)
		return
	}
	c.sconn = sconn
	c.auth = res
	d := res.decision
	c.id = scheduler.Identity{
		User:             d.User,
		Profile:          d.Profile,
		ProfileFromLogin: d.Profile != "" && !d.Assigned,
		RemoteAddr:       sconn.RemoteAddr().String(),
		ConnID:           c.connID,
		KeyFingerprint:   res.keyFP,
		AcceptedAt:       c.acceptedAt,
	}
	unregister, regErr := c.srv.register(c)
	if regErr == nil {
		defer unregister()
	}

	attachDone := make(chan struct{})
	go func() {
		defer close(attachDone)
		c.runAttach(ctx, regErr)
	}()
	c.wg.Go(func() { c.globalRequests(reqs) })
	c.wg.Go(func() { c.enforceLimits(ctx) })
	if c.srv.cfg.KeepaliveInterval > 0 {
		c.wg.Go(func() { c.keepalive(ctx) })
	}

	for nch := range chans {
		switch nch.ChannelType() {
		case "session":
			s, refusal := c.newSession()
			if s == nil {
				c.srv.log.Warn("refused session", "conn_id", c.connID, "reason", refusal)
				_ = nch.Reject(ssh.ResourceShortage, refusal)
				continue
			}
			c.wg.Go(func() { s.serve(ctx, nch) })
		case "direct-tcpip":
			if c.auth.decision.Restrictions.NoPortForwarding {
				c.srv.log.Info("refused port forwarding: the certificate lacks permit-port-forwarding", "conn_id", c.connID)
				_ = nch.Reject(ssh.Prohibited, "podgate: your certificate does not permit port forwarding")
				continue
			}
			c.wg.Go(func() { c.forward(ctx, nch) })
		default:
			c.srv.log.Info("refused channel type", "conn_id", c.connID, "type", nch.ChannelType())
			_ = nch.Reject(ssh.UnknownChannelType, "unsupported channel type")
		}
	}
	cancel()
	c.wg.Wait()
	<-attachDone
	att, attErr := c.attach.result()
	pod, profile := "", c.id.Profile
	var reconnect []any
	if att != nil {
		if pn, ok := att.(podNamer); ok {
			pod = pn.PodName()
		}
		// The profile the scheduler resolved (the default one has an
		// empty name in the login).
		if p := att.Settings().Profile; p != "" {
			profile = p
		}
		if err := att.Close(); err != nil {
			c.srv.log.Warn("closing attachment", "conn_id", c.connID, "err", err)
		}
		if ra, ok := att.(reconnectAuditor); ok {
			if r, parked := ra.ReconnectAudit(); r != "" {
				reconnect = []any{"reconnect", r, "parked", parked}
			}
		}
	}
	c.mu.Lock()
	nSession, cut := c.nSession, c.cutReason
	c.mu.Unlock()
	attrs := []any{
		"conn_id", c.connID, "authenticated", true, "user", c.id.User, "profile", profile,
		"remote", c.id.RemoteAddr, "key_fp", c.id.KeyFingerprint, "pod", pod,
		"client", string(sconn.ClientVersion()), "start", c.acceptedAt,
		"duration", time.Since(c.acceptedAt), "sessions", nSession,
	}
	attrs = append(attrs, reconnect...)
	if cert := c.auth.decision.Cert; cert.CA != "" {
		attrs = append(attrs, "cert_id", cert.ID, "cert_serial", cert.Serial, "ca_fp", cert.CA)
	}
	if attErr != nil {
		attrs = append(attrs, "refused", scheduler.UserMessage(attErr))
	}
	if cut != "" {
		attrs = append(attrs, "cut", cut)
	}
	c.srv.audit.Info("connection", attrs...)
}

// runAttach asks the backend for the attachment while the client opens its
// session, so the claim overlaps the client's round trips. On failure it
// closes the connection once a session has shown the reason, or after the
// handshake timeout if the client never opens one.
func (c *conn) runAttach(ctx context.Context, refused error) {
	var (
		att scheduler.Attachment
		err = refused
	)
	switch {
	case errors.Is(refused, errTooManyForUser):
		c.srv.metrics.refused.WithLabelValues(refusedMaxPerUser).Inc()
		err = &scheduler.Refusal{Err: refused, Reason: "you have too many connections open; close one and try again"}
	case refused != nil:
		c.srv.metrics.refused.WithLabelValues(refusedShuttingDown).Inc()
	default:
		att, err = c.srv.backend.Attach(ctx, c.id, c.attach.progress)
	}
	c.attach.set(att, err)
	if err == nil {
		return
	}
	c.srv.log.Warn("attach failed", "conn_id", c.connID, "user", c.id.User, "profile", c.id.Profile, "err", err)
	t := time.NewTimer(c.srv.cfg.HandshakeTimeout)
	defer t.Stop()
	select {
	case <-c.failureShown:
		// Let the client read the exit status and hang up itself:
		// closing first makes OpenSSH exit 255 with "Broken pipe"
		// instead of the status it was sent.
		t.Reset(failureGrace)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	case <-t.C:
	case <-ctx.Done():
	}
	c.sconn.Close()
}

// failureWasShown records that a session told the user why it failed.
func (c *conn) failureWasShown() {
	c.failureShownOnce.Do(func() { close(c.failureShown) })
}

// globalRequests refuses every global request; remote forwarding (ssh -R)
// is logged because users may wonder why it fails.
func (c *conn) globalRequests(reqs <-chan *ssh.Request) {
	for r := range reqs {
		switch r.Type {
		case "tcpip-forward", "streamlocal-forward@openssh.com":
			c.srv.log.Info("refused remote port forwarding", "conn_id", c.connID, "type", r.Type)
		case "keepalive@openssh.com", "no-more-sessions@openssh.com", "cancel-tcpip-forward":
		default:
			c.srv.log.Debug("refused global request", "conn_id", c.connID, "type", r.Type)
		}
		if r.WantReply {
			_ = r.Reply(false, nil)
		}
	}
}

// keepalive sends keepalive@openssh.com every interval and closes the
// connection when maxMissed intervals pass without an answer. Any reply,
// even a failure, proves the client is alive.
func (c *conn) keepalive(ctx context.Context) {
	t := time.NewTicker(c.srv.cfg.KeepaliveInterval)
	defer t.Stop()
	var pending chan error
	missed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-pending:
			pending = nil
			if err != nil {
				return
			}
			missed = 0
		case <-t.C:
			if pending != nil {
				if missed++; missed >= c.srv.cfg.KeepaliveMaxMissed {
					c.srv.log.Info("closing unresponsive connection", "conn_id", c.connID, "missed_keepalives", missed)
					c.sconn.Close()
					return
				}
				continue
			}
			pending = make(chan error, 1)
			go func(p chan<- error) {
				_, _, err := c.sconn.SendRequest("keepalive@openssh.com", true, nil)
				p <- err
			}(pending)
		}
	}
}

// newSession registers a new session, or returns nil and the reason for
// the client when the connection already has maxSessionsPerConn open or
// is being closed at a limit.
func (c *conn) newSession() (*session, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.cutReason != "":
		return nil, "this connection is being closed"
	case len(c.sessions) >= maxSessionsPerConn:
		return nil, "too many sessions on this connection"
	}
	c.nSession++
	s := &session{c: c, num: c.nSession, log: c.srv.log.With("conn_id", c.connID, "session", c.nSession)}
	c.sessions[s] = struct{}{}
	c.sessionsLive.Add(1)
	return s, ""
}

func (c *conn) endSession(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sessions, s)
	c.sessionsLive.Done()
}

// notifyTerminals shows msg on every session of the connection that has a
// terminal: warnings are for people, not for scripts reading stderr.
func (c *conn) notifyTerminals(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := range c.sessions {
		s.notifyTerminal(msg)
	}
}

// notifyAll shows msg on every session of the connection.
func (c *conn) notifyAll(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := range c.sessions {
		s.notify(msg)
	}
}

// auditLogin is a login name as a client sent it, made safe for the audit
// trail: valid UTF-8 and at most 64 bytes (the JSON handler escapes
// control characters).
func auditLogin(login string) string {
	if len(login) > 64 {
		login = login[:64]
	}
	return strings.ToValidUTF8(login, "\uFFFD")
}
