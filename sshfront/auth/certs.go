package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"k8s.io/utils/clock"
)

// CertSkew is how far the server's clock may be from the CA's when a
// certificate's validity is checked: a certificate is accepted from one
// minute before its valid-after time until one minute after its
// valid-before time. It covers ordinary drift between the machine that
// signed ("ssh-keygen -V +1h" starts the window at the signing machine's
// now) and podgate's, and nothing more.
const CertSkew = time.Minute

// Critical options podgate honours; a certificate with any other is
// refused, as OpenSSH does.
const (
	optForceCommand  = "force-command"
	optSourceAddress = "source-address"
)

// ProfileCAs tells which profiles trust a CA key for their own logins (the
// podgate.io/user-ca-keys annotation). Implementations must be safe for
// concurrent use.
type ProfileCAs interface {
	ProfilesTrusting(ca ssh.PublicKey) []string
}

// CertConfig configures a CertAuthority.
type CertConfig struct {
	// CAKeys are trusted for every profile (PODGATE_USER_CA_KEYS); see
	// ParseCAKeys.
	CAKeys []ssh.PublicKey
	// Profiles, when set, adds the CAs of individual profiles.
	Profiles ProfileCAs
	// Revocations, when set, lists revoked certificates.
	Revocations *Revocations
	// Clock is the time source; nil means the real clock.
	Clock clock.PassiveClock
}

// CertAuthority authenticates OpenSSH user certificates. The login name's
// user part must be one of the certificate's principals and becomes the
// podgate user. A certificate signed by a global CA lands in the profile
// the login names (which must then allow selection by login, as for a
// plain key); one signed by a profile's own CA is assigned that profile,
// so an instructor's CA grants its lab and nothing else.
//
// Every refusal is logged with the reason an operator needs (unknown CA,
// revoked and by which entry, wrong principal, expired or not yet valid
// with the times, source address). The final verdict is always
// ssh.CertChecker's, with IsUserAuthority set, so that the checks podgate
// makes for those log lines can only add refusals.
type CertAuthority struct {
	global   []ssh.PublicKey
	profiles ProfileCAs
	revoked  *Revocations
	clock    clock.PassiveClock
	log      *slog.Logger
}

// NewCertAuthority checks cfg and returns the authenticator.
func NewCertAuthority(cfg CertConfig, log *slog.Logger) (*CertAuthority, error) {
	if len(cfg.CAKeys) == 0 && cfg.Profiles == nil {
		return nil, errors.New("certificate authentication needs at least one CA key")
	}
	for _, k := range cfg.CAKeys {
		if err := checkCAKey(k); err != nil {
			return nil, fmt.Errorf("CA key %s: %w", ssh.FingerprintSHA256(k), err)
		}
	}
	clk := cfg.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &CertAuthority{global: cfg.CAKeys, profiles: cfg.Profiles, revoked: cfg.Revocations, clock: clk, log: log}, nil
}

// Certificate decides a login with cert. meta is the connection's metadata
// (its User is the raw login name; req.User is the parsed user).
func (a *CertAuthority) Certificate(_ context.Context, req Request, meta ssh.ConnMetadata, cert *ssh.Certificate) (Decision, error) {
	info := CertInfo{ID: cert.KeyId, Serial: cert.Serial, CA: ssh.FingerprintSHA256(cert.SignatureKey)}
	log := a.log.With("conn_id", req.ConnID, "login", req.User, "remote", req.RemoteAddr,
		"cert_id", info.ID, "cert_serial", info.Serial, "ca_fp", info.CA)
	refuse := func(msg string, args ...any) (Decision, error) {
		log.Warn("refused certificate: "+msg, args...)
		return Decision{}, ErrDenied
	}
	if cert.CertType != ssh.UserCert {
		return refuse("a host certificate offered for a user login")
	}
	if cert.Signature == nil || cert.Signature.Format == ssh.KeyAlgoRSA {
		return refuse("signed with ssh-rsa (SHA-1), which OpenSSH no longer accepts either; re-sign with rsa-sha2-512 or an ed25519 CA")
	}
	d, reason := a.profileFor(req, cert.SignatureKey)
	if reason != "" {
		return refuse(reason, "profile", req.Profile)
	}
	if a.revoked != nil {
		entry, err := a.revoked.Revoked(cert, a.clock.Now())
		if err != nil {
			return refuse("the revocation list is unusable", "err", err)
		}
		if entry != "" {
			return refuse("revoked", "entry", entry)
		}
	}
	if len(cert.ValidPrincipals) == 0 {
		return refuse("no principals; sign it with ssh-keygen -n USER")
	}
	if !slices.Contains(cert.ValidPrincipals, req.User) {
		return refuse("wrong principal", "principals", cert.ValidPrincipals)
	}
	now := a.clock.Now()
	if msg := checkValidity(cert, now); msg != "" {
		return refuse(msg, "valid_after", certTime(cert.ValidAfter), "valid_before", certTime(cert.ValidBefore), "now", now.UTC(), "skew", CertSkew)
	}
	if src, ok := cert.CriticalOptions[optSourceAddress]; ok {
		if err := checkSource(meta.RemoteAddr(), src); err != nil {
			return refuse("source address not allowed", "source_address", src, "err", err)
		}
	}
	checker := ssh.CertChecker{
		IsUserAuthority:          func(ca ssh.PublicKey) bool { return a.trusts(req, ca) },
		IsRevoked:                func(*ssh.Certificate) bool { return false }, // checked above, with the entry logged
		SupportedCriticalOptions: []string{optForceCommand, optSourceAddress},
		// Validity was checked above with the skew allowance; the
		// checker's own strict check is given a time inside the window.
		Clock: func() time.Time { return clampToValidity(now, cert) },
	}
	perms, err := checker.Authenticate(loginMeta{ConnMetadata: meta, user: req.User}, cert)
	if err != nil {
		return refuse("rejected by the certificate checker", "err", err)
	}
	_, permitPTY := perms.Extensions["permit-pty"]
	_, permitFwd := perms.Extensions["permit-port-forwarding"]
	d.User = req.User
	d.Cert = info
	d.Restrictions = Restrictions{
		ForceCommand:     perms.CriticalOptions[optForceCommand],
		SourceAddress:    perms.CriticalOptions[optSourceAddress],
		NoPTY:            !permitPTY,
		NoPortForwarding: !permitFwd,
	}
	log.Info("accepted certificate", "profile", d.Profile, "force_command", d.Restrictions.ForceCommand != "",
		"permit_pty", permitPTY, "permit_port_forwarding", permitFwd)
	return d, nil
}

// profileFor decides which profile a certificate from ca may log into, or
// why it may not.
func (a *CertAuthority) profileFor(req Request, ca ssh.PublicKey) (Decision, string) {
	global := slices.ContainsFunc(a.global, func(k ssh.PublicKey) bool { return sameKey(k, ca) })
	var own []string
	if a.profiles != nil {
		own = a.profiles.ProfilesTrusting(ca)
	}
	switch {
	case req.Profile != "" && slices.Contains(own, req.Profile):
		return Decision{Profile: req.Profile, Assigned: true}, ""
	case global:
		return Decision{Profile: req.Profile}, ""
	case len(own) == 0:
		return Decision{}, "signed by a CA that is not trusted"
	case req.Profile != "":
		return Decision{}, fmt.Sprintf("signed by the CA of profile %s, not of the profile the login names", strings.Join(own, ", "))
	case len(own) == 1:
		return Decision{Profile: own[0], Assigned: true}, ""
	}
	return Decision{}, fmt.Sprintf("signed by a CA that profiles %s all trust; the login must name one as user+profile", strings.Join(own, ", "))
}

// trusts is IsUserAuthority: ca may sign for this login's profile.
func (a *CertAuthority) trusts(req Request, ca ssh.PublicKey) bool {
	_, reason := a.profileFor(req, ca)
	return reason == ""
}

// checkValidity applies the certificate's validity window with CertSkew
// on both sides, and says what is wrong, or "".
func checkValidity(cert *ssh.Certificate, now time.Time) string {
	after, before := int64(cert.ValidAfter), int64(cert.ValidBefore)
	if after < 0 || now.Add(CertSkew).Unix() < after {
		return "not yet valid"
	}
	if cert.ValidBefore != ssh.CertTimeInfinity && (before < 0 || now.Add(-CertSkew).Unix() >= before) {
		return "expired"
	}
	return ""
}

// clampToValidity moves now into the certificate's window [valid-after,
// valid-before), which checkValidity found it to be within CertSkew of.
func clampToValidity(now time.Time, cert *ssh.Certificate) time.Time {
	if after := time.Unix(int64(cert.ValidAfter), 0); now.Before(after) {
		return after
	}
	if cert.ValidBefore != ssh.CertTimeInfinity {
		if last := time.Unix(int64(cert.ValidBefore)-1, 0); now.After(last) {
			return last
		}
	}
	return now
}

// certTime renders a certificate time for a log line.
func certTime(t uint64) string {
	if t == ssh.CertTimeInfinity {
		return "forever"
	}
	if int64(t) < 0 {
		return "invalid"
	}
	return time.Unix(int64(t), 0).UTC().Format(time.RFC3339)
}

// checkSource matches the client's address against a source-address list
// of IP addresses and CIDRs, as OpenSSH does. The ssh library enforces the
// same option again after authentication.
func checkSource(addr net.Addr, list string) error {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("client address %v is not a TCP address", addr)
	}
	for _, s := range strings.Split(list, ",") {
		if ip := net.ParseIP(s); ip != nil {
			if ip.Equal(tcp.IP) {
				return nil
			}
			continue
		}
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return fmt.Errorf("malformed entry %q", s)
		}
		if n.Contains(tcp.IP) {
			return nil
		}
	}
	return fmt.Errorf("%s is not in the list", tcp.IP)
}

// loginMeta is the connection's metadata with the parsed user name, so
// that the certificate checker matches principals against "alice" rather
// than the login "alice+lab".
type loginMeta struct {
	ssh.ConnMetadata
	user string
}

func (m loginMeta) User() string { return m.user }
