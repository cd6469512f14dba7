// Package auth decides who an SSH client is: it validates login names and
// checks passwords and public keys against an authorized-keys source, an HTTP
// webhook compatible with ContainerSSH, or (for demos) nothing at all. It
// knows nothing about SSH connections beyond the credentials; package sshfront
// calls it from its authentication callbacks and throttles failures with
// Throttle.
package auth

import "errors"

// ErrDenied means the credentials were checked and rejected. Any other error
// from an authenticator means the check itself failed (for example the
// webhook was unreachable); sshfront treats both as a failed attempt but logs
// them differently.
var ErrDenied = errors.New("authentication denied")

// Request describes one authentication attempt, without the credential.
type Request struct {
	// User is the canonical login name (see ParseLogin).
	User string
	// Profile is the profile asked for with "user+profile", or empty.
	Profile string
	// RemoteAddr is the client's address as host:port.
	RemoteAddr string
	// ConnID is the connection's opaque identifier.
	ConnID string
	// ClientVersion is the client's SSH version string.
	ClientVersion string
}

// Decision is the outcome of a successful attempt.
type Decision struct {
	// User is the canonical user name the connection runs as.
	User string
	// Profile is the profile to use; empty means the default profile.
	Profile string
	// Assigned is true when the auth source chose Profile itself; false
	// means Profile is the login name's "+profile" choice, which the
	// profile must allow.
	Assigned bool
	// Restrictions are what the credential itself limits (a certificate's
	// critical options and extensions); the zero value limits nothing.
	Restrictions Restrictions
	// Cert describes the certificate that authenticated the user, for
	// the audit trail; it is zero for plain keys and passwords.
	Cert CertInfo
}

// Restrictions limit an authenticated connection the way OpenSSH honours a
// user certificate's critical options and permit-* extensions.
type Restrictions struct {
	// ForceCommand, when set, runs instead of whatever each session asks
	// for (the force-command critical option).
	ForceCommand string
	// SourceAddress is the source-address critical option: the
	// comma-separated addresses and CIDRs the client must come from.
	SourceAddress string
	// NoPTY and NoPortForwarding are set when the certificate lacks the
	// permit-pty and permit-port-forwarding extensions.
	NoPTY            bool
	NoPortForwarding bool
}

// CertInfo identifies a certificate in logs and the audit trail.
type CertInfo struct {
	ID     string // the key ID given to ssh-keygen -I
	Serial uint64
	CA     string // the CA key's SHA256 fingerprint
}
