// Package sshfront is podgate's SSH front end. It accepts SSH connections,
// authenticates them (package sshfront/auth), and adapts each connection to
// the scheduler: right after authentication it asks the Backend for an
// Attachment, and every session channel becomes one scheduler.Process run
// by Attachment.Run. It owns everything that is about SSH (algorithms,
// limits, keepalives, request parsing, terminal messages, audit lines) and
// nothing that is about pods.
//
// Time comes from the time package; tests control it with testing/synctest
// over net.Pipe connections, so no clock is injected.
package sshfront

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/scheduler"
	"github.com/podgate/podgate/sshfront/auth"
)

// Backend is the subset of the scheduler sshfront uses.
type Backend interface {
	Attach(ctx context.Context, id scheduler.Identity, progress scheduler.Progress) (scheduler.Attachment, error)
}

// PublicKeyChecker checks a public key for a login; auth.Keys, auth.Webhook
// and auth.Demo implement it.
type PublicKeyChecker interface {
	PublicKey(ctx context.Context, req auth.Request, key ssh.PublicKey) (auth.Decision, error)
}

// PasswordChecker checks a password for a login; auth.Webhook and auth.Demo
// implement it.
type PasswordChecker interface {
	Password(ctx context.Context, req auth.Request, password []byte) (auth.Decision, error)
}

// CertificateChecker checks an OpenSSH user certificate for a login;
// auth.CertAuthority implements it. meta is the connection's metadata.
type CertificateChecker interface {
	Certificate(ctx context.Context, req auth.Request, meta ssh.ConnMetadata, cert *ssh.Certificate) (auth.Decision, error)
}

// Authenticators are the credential checks offered to clients; a nil field
// disables that method. A certificate goes to Certificate when it is set
// (and never to PublicKey, which knows plain keys only).
type Authenticators struct {
	PublicKey   PublicKeyChecker
	Password    PasswordChecker
	Certificate CertificateChecker
}

var (
	_ PublicKeyChecker = (*auth.Keys)(nil)
	_ PublicKeyChecker = (*auth.Webhook)(nil)
	_ PasswordChecker  = (*auth.Webhook)(nil)
	_ PublicKeyChecker = auth.Demo{}
	_ PasswordChecker  = auth.Demo{}

	_ CertificateChecker = (*auth.CertAuthority)(nil)
)

// podNamer is implemented by attachments that know their pod's name; it is
// used for audit lines and to accept "ssh -L port:<pod>:port".
type podNamer interface {
	PodName() string
}

// reconnectAuditor is an attachment that can say, for the audit line,
// whether the login got its parked pod back and whether the pod was parked
// at the end (scheduler's connection-mode attachment).
type reconnectAuditor interface {
	ReconnectAudit() (reconnect string, parked bool)
}

// errTooManyForUser is the refusal for users over MaxConnectionsPerUser.
var errTooManyForUser = errors.New("too many connections for user")

// Server is the SSH server. Create it with New, run it with Serve, and stop
// it with Shutdown.
type Server struct {
	cfg      Config
	backend  Backend
	authn    Authenticators
	throttle *auth.Throttle
	sshConf  ssh.ServerConfig // template, copied per connection
	log      *slog.Logger
	audit    *slog.Logger
	metrics  *metrics

	// preauth is a semaphore of MaxPreAuth slots for connections that have
	// not finished authenticating.
	preauth chan struct{}
	// conns tracks connection goroutines so Shutdown and Serve can wait.
	conns sync.WaitGroup
	// hardStop is cancelled when Shutdown runs out of time; every
	// connection, pre-auth ones included, closes on it.
	hardStop   context.Context
	cancelHard context.CancelFunc

	// mu protects the following.
	mu           sync.Mutex
	shuttingDown bool
	listeners    map[net.Listener]struct{}
	open         map[*conn]struct{} // authenticated connections
	total        int                // all accepted connections, pre-auth included
	perIP        map[string]int
	perUser      map[string]int
}

// New checks cfg and builds a Server. In demo mode authn must be empty: every
// login is accepted. log receives operator logs; audit receives one JSON
// line per connection and per session.
func New(cfg Config, backend Backend, authn Authenticators, log, audit *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("configuring ssh server: %w", err)
	}
	if backend == nil {
		return nil, errors.New("configuring ssh server: no backend")
	}
	if cfg.Demo {
		if authn.PublicKey != nil || authn.Password != nil || authn.Certificate != nil {
			return nil, errors.New("configuring ssh server: demo mode accepts everyone and takes no authenticators")
		}
		authn = Authenticators{PublicKey: auth.Demo{}, Password: auth.Demo{}}
	} else if authn.PublicKey == nil && authn.Password == nil && authn.Certificate == nil {
		return nil, errors.New("configuring ssh server: no authentication method configured")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	hardStop, cancelHard := context.WithCancel(context.Background())
	s := &Server{
		hardStop:   hardStop,
		cancelHard: cancelHard,
		cfg:        cfg,
		backend:    backend,
		authn:      authn,
		throttle:   auth.NewThrottle(cfg.Throttle, log),
		log:        log,
		audit:      audit,
		metrics:    m,
		preauth:    make(chan struct{}, cfg.MaxPreAuth),
		listeners:  make(map[net.Listener]struct{}),
		open:       make(map[*conn]struct{}),
		perIP:      make(map[string]int),
		perUser:    make(map[string]int),
	}
	kex, ciphers, macs, pubKeyAuth := algorithms()
	s.sshConf = ssh.ServerConfig{
		Config:                  ssh.Config{KeyExchanges: kex, Ciphers: ciphers, MACs: macs},
		PublicKeyAuthAlgorithms: pubKeyAuth,
		MaxAuthTries:            cfg.MaxAuthTries,
		ServerVersion:           cfg.ServerVersion,
	}
	for _, k := range cfg.HostKeys {
		s.sshConf.AddHostKey(k)
		log.Info("ssh host key", "type", k.PublicKey().Type(), "fingerprint", ssh.FingerprintSHA256(k.PublicKey()))
	}
	return s, nil
}

// Serve accepts connections on ln until ctx is done or Shutdown is called.
// When ctx ends, every connection is closed and Serve waits for them; after
// Shutdown, Serve returns at once and Shutdown does the waiting.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.Demo && !s.cfg.DemoInsecure && !isLoopback(ln.Addr()) {
		return fmt.Errorf("demo mode accepts everyone: refusing to listen on non-loopback address %s without DemoInsecure", ln.Addr())
	}
	if s.cfg.Demo {
		s.log.Warn("DEMO MODE: every user is accepted with any key or password; do not expose this server", "addr", ln.Addr().String())
	}
	s.mu.Lock()
	if s.shuttingDown {
		s.mu.Unlock()
		return scheduler.ErrShuttingDown
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	s.log.Info("ssh server listening", "addr", ln.Addr().String())
	var tempDelay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isShuttingDown() {
				return nil
			}
			if ctx.Err() != nil {
				s.conns.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, retrying", "err", err, "delay", tempDelay)
				time.Sleep(tempDelay)
				continue
			}
			return fmt.Errorf("accepting ssh connections: %w", err)
		}
		tempDelay = 0
		s.accept(ctx, nc, time.Now())
	}
}

// accept applies the connection limits and starts the connection goroutine.
// Over a limit the client is sent one line before the version exchange
// (RFC 4253 section 4.2 allows that) and disconnected. OpenSSH shows such a
// line only with -v and otherwise reports "Connection closed by remote
// host", exactly as for sshd's own MaxStartups; the line is there for -v
// users and for operators reading a capture.
func (s *Server) accept(ctx context.Context, nc net.Conn, acceptedAt time.Time) {
	host := remoteHost(nc.RemoteAddr())
	reason := s.admit(host)
	if reason == "" {
		select {
		case s.preauth <- struct{}{}:
		default:
			s.release(host)
			reason = refusedMaxPreAuth
		}
	}
	if reason != "" {
		s.metrics.refused.WithLabelValues(reason).Inc()
		s.log.Warn("refusing connection", "remote", nc.RemoteAddr().String(), "reason", reason)
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write([]byte("podgate: too many connections, please try again later\r\n"))
		nc.Close()
		return
	}
	s.conns.Add(1)
	go func() {
		defer s.conns.Done()
		defer s.release(host)
		s.handle(ctx, nc, host, acceptedAt)
	}()
}

// admit counts a new connection from host, or returns why it is refused.
func (s *Server) admit(host string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.shuttingDown:
		return refusedShuttingDown
	case s.cfg.MaxConnections > 0 && s.total >= s.cfg.MaxConnections:
		return refusedMaxConnections
	case s.cfg.MaxConnectionsPerIP > 0 && s.perIP[host] >= s.cfg.MaxConnectionsPerIP:
		return refusedMaxPerIP
	}
	s.total++
	s.perIP[host]++
	return ""
}

func (s *Server) release(host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.perIP[host]--; s.perIP[host] <= 0 {
		delete(s.perIP, host)
	}
}

// register records an authenticated connection, or reports that its user is
// over MaxConnectionsPerUser. The returned func undoes it.
func (s *Server) register(c *conn) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown {
		return nil, scheduler.ErrShuttingDown
	}
	user := c.id.User
	if s.cfg.MaxConnectionsPerUser > 0 && s.perUser[user] >= s.cfg.MaxConnectionsPerUser {
		return nil, errTooManyForUser
	}
	s.perUser[user]++
	s.open[c] = struct{}{}
	s.metrics.connsActive.Inc()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.perUser[user]--; s.perUser[user] <= 0 {
			delete(s.perUser, user)
		}
		delete(s.open, c)
		s.metrics.connsActive.Dec()
	}, nil
}

func (s *Server) isShuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shuttingDown
}

// NotifyAll writes msg as one line on every open session's terminal or
// stderr. It does not block on slow clients.
func (s *Server) NotifyAll(msg string) {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.open))
	for c := range s.open {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.notifyAll(msg)
	}
}

// Shutdown stops accepting, tells connected users the server is going away,
// waits for their connections to end until ctx is done, and then closes
// whatever is left. It returns ctx's error if it had to cut connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shuttingDown = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.NotifyAll("podgate: the server is restarting; please save your work, this session will end soon")

	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.cancelHard()
	<-done
	return fmt.Errorf("shutting down ssh server: %w", ctx.Err())
}

// newConnID returns a random identifier for logs and audit lines.
func newConnID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

func remoteHost(addr net.Addr) string {
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}

func isLoopback(addr net.Addr) bool {
	host := remoteHost(addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
