package sshfront

import (
	"errors"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/sshfront/auth"
	"github.com/podgate/podgate/sshfront/recording"
)

// Config is everything the SSH front end is told by cmd; sshfront reads no
// environment or flags itself. Zero values mean the documented defaults.
type Config struct {
	// HostKeys are the server's host keys; see LoadHostKeys.
	HostKeys []ssh.Signer
	// ServerVersion is the SSH identification string; it must start with
	// "SSH-2.0-". Default "SSH-2.0-podgate".
	ServerVersion string

	// HandshakeTimeout cuts the whole pre-auth phase (key exchange and
	// authentication). Default 30 s.
	HandshakeTimeout time.Duration
	// MaxAuthTries is the number of failed attempts before disconnecting.
	// Default 6, like OpenSSH.
	MaxAuthTries int
	// MaxPreAuth bounds connections still in the pre-auth phase; more are
	// closed at once, like OpenSSH's MaxStartups. Default 64.
	MaxPreAuth int
	// MaxConnections, MaxConnectionsPerIP and MaxConnectionsPerUser bound
	// open connections; zero means no limit.
	MaxConnections        int
	MaxConnectionsPerIP   int
	MaxConnectionsPerUser int

	// KeepaliveInterval is how often a keepalive@openssh.com request is sent;
	// a negative value disables keepalives. Default 15 s.
	KeepaliveInterval time.Duration
	// KeepaliveMaxMissed is how many intervals may pass without a reply
	// before the connection is closed. Default 3.
	KeepaliveMaxMissed int

	// WarnBefore is how long before an idle or session-length cut-off a
	// terminal user is warned. Default 60 s.
	WarnBefore time.Duration

	// Throttle bounds failed authentication attempts per source address.
	Throttle auth.ThrottleConfig

	// Demo accepts any user with any credential. Serve refuses to run it on
	// a non-loopback address unless DemoInsecure is also set.
	Demo         bool
	DemoInsecure bool

	// Banner is sent to every client before authentication (OpenSSH
	// prints it above the password prompt); ProfileBanner, when set,
	// returns the banner of the profile a "user+profile" login names, or
	// "" for the server's. In demo mode the banner starts with a line
	// saying that any password works.
	Banner        string
	ProfileBanner func(profile string) string
	// Recordings is where terminal sessions of recording profiles go;
	// nil refuses those sessions.
	Recordings *recording.Dir
}

// withDefaults returns c with zero values replaced by defaults, or an error
// for settings that cannot work.
func (c Config) withDefaults() (Config, error) {
	if len(c.HostKeys) == 0 {
		return c, errors.New("no host keys configured")
	}
	if c.ServerVersion == "" {
		c.ServerVersion = "SSH-2.0-podgate"
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 30 * time.Second
	}
	if c.MaxAuthTries <= 0 {
		c.MaxAuthTries = 6
	}
	if c.MaxPreAuth <= 0 {
		c.MaxPreAuth = 64
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = 15 * time.Second
	}
	if c.KeepaliveMaxMissed <= 0 {
		c.KeepaliveMaxMissed = 3
	}
	if c.WarnBefore <= 0 {
		c.WarnBefore = time.Minute
	}
	if c.MaxConnections < 0 || c.MaxConnectionsPerIP < 0 || c.MaxConnectionsPerUser < 0 {
		return c, errors.New("connection limits must not be negative")
	}
	return c, nil
}

// algorithms returns the only algorithms podgate negotiates: post-quantum
// hybrid and X25519 key exchange, AEAD ciphers (which need no separate MAC),
// encrypt-then-MAC SHA-2 MACs for clients that negotiate a MAC anyway, and
// client key signatures without ssh-rsa (SHA-1) and DSA. It is a function,
// not a package variable, so no caller can modify the shared lists.
func algorithms() (kex, ciphers, macs, pubKeyAuth []string) {
	kex = []string{
		ssh.KeyExchangeMLKEM768X25519,
		ssh.KeyExchangeCurve25519,
		"curve25519-sha256@libssh.org",
	}
	ciphers = []string{
		ssh.CipherChaCha20Poly1305,
		ssh.CipherAES256GCM,
		ssh.CipherAES128GCM,
	}
	macs = []string{ssh.HMACSHA256ETM, ssh.HMACSHA512ETM}
	pubKeyAuth = []string{
		ssh.KeyAlgoED25519,
		ssh.KeyAlgoSKED25519,
		ssh.KeyAlgoSKECDSA256,
		ssh.KeyAlgoECDSA256,
		ssh.KeyAlgoECDSA384,
		ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoRSASHA256,
		ssh.KeyAlgoRSASHA512,
	}
	return kex, ciphers, macs, pubKeyAuth
}
