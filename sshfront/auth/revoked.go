package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"k8s.io/utils/clock"
)

// Revocations is a list of revoked certificates and keys, read from a text
// file that is a subset of ssh-keygen's KRL specification format (the
// "KEY REVOCATION LISTS" section of ssh-keygen(1)), one entry per line:
//
//	serial: 7          a certificate serial number
//	serial: 10-20      an inclusive range of serial numbers
//	id: lab3-alice     a certificate key ID (the rest of the line)
//	key: ssh-ed25519 AAAA...   a public key, plain or as certified
//	hash: SHA256:...   a public key by its SHA256 fingerprint
//
// with blank lines and # comments. Serial and ID entries apply to the
// certificates of every trusted CA (ssh-keygen scopes them to the CA given
// with -s; the same file compiles to a binary KRL with "ssh-keygen -k -s").
// podgate reads this text form rather than the binary KRL because no
// maintained Go KRL parser exists: stripe/krl, the one there was, was
// deprecated and archived by its authors in 2025.
//
// The file is re-read when its size or modification time changes, checked
// at most once per second, so a revocation takes effect within a second
// without a restart. A file that cannot be read or parsed any more refuses
// every certificate until it is fixed: failing open would re-admit what
// was revoked.
type Revocations struct {
	path string
	log  *slog.Logger

	// mu protects the following. File I/O happens outside it.
	mu        sync.Mutex
	cur       *revokedSet
	err       error // why the file is unusable; cur is then nil
	checkedAt time.Time
	modTime   time.Time
	size      int64
}

// maxRevocationFile caps how much of the revocation file is read.
const maxRevocationFile = 16 << 20

// revokedSet is one parsed revocation file.
type revokedSet struct {
	serials []serialRange
	ids     map[string]bool
	keys    map[string]bool // by ssh.PublicKey.Marshal
	hashes  map[string]bool // by ssh.FingerprintSHA256
}

type serialRange struct{ lo, hi uint64 }

// NewRevocations reads the revocation file at path; a file that cannot be
// read or parsed is an error naming the line.
func NewRevocations(path string, now time.Time, log *slog.Logger) (*Revocations, error) {
	r := &Revocations{path: path, log: log}
	if _, err := r.current(now); err != nil {
		return nil, err
	}
	return r, nil
}

// Revoked reports whether cert, its key or its CA is revoked, with the
// entry that matched, or fails when the list is unusable.
func (r *Revocations) Revoked(cert *ssh.Certificate, now time.Time) (string, error) {
	set, err := r.current(now)
	if err != nil {
		return "", err
	}
	return set.match(cert), nil
}

// RevokedKey reports whether a plain public key is revoked (by a key: or
// hash: entry), with the entry that matched.
func (r *Revocations) RevokedKey(key ssh.PublicKey, now time.Time) (string, error) {
	set, err := r.current(now)
	if err != nil {
		return "", err
	}
	if set.keys[string(key.Marshal())] || set.hashes[ssh.FingerprintSHA256(key)] {
		return "key " + ssh.FingerprintSHA256(key), nil
	}
	return "", nil
}

// KeyChecker is an authenticator of plain public keys, such as Keys and
// Webhook.
type KeyChecker interface {
	PublicKey(ctx context.Context, req Request, key ssh.PublicKey) (Decision, error)
}

// RevokedKeysFilter refuses plain keys the revocation list names before
// asking Next, as OpenSSH's RevokedKeys applies to every key and not only
// to certificates.
type RevokedKeysFilter struct {
	Next        KeyChecker
	Revocations *Revocations
	Clock       clock.PassiveClock
	Log         *slog.Logger
}

// PublicKey implements KeyChecker.
func (f RevokedKeysFilter) PublicKey(ctx context.Context, req Request, key ssh.PublicKey) (Decision, error) {
	entry, err := f.Revocations.RevokedKey(key, f.Clock.Now())
	switch {
	case err != nil:
		f.Log.Warn("refused key: the revocation list is unusable", "conn_id", req.ConnID, "login", req.User, "err", err)
		return Decision{}, ErrDenied
	case entry != "":
		f.Log.Warn("refused key: revoked", "conn_id", req.ConnID, "login", req.User, "remote", req.RemoteAddr, "entry", entry)
		return Decision{}, ErrDenied
	}
	return f.Next.PublicKey(ctx, req, key)
}

// current returns the parsed list, re-reading the file when it changed and
// the last check is older than recheckEvery.
func (r *Revocations) current(now time.Time) (*revokedSet, error) {
	r.mu.Lock()
	if (r.cur != nil || r.err != nil) && now.Sub(r.checkedAt) < recheckEvery {
		defer r.mu.Unlock()
		return r.cur, r.err
	}
	modTime, size, loaded := r.modTime, r.size, r.cur != nil
	r.mu.Unlock()

	set, st, err := r.load(modTime, size, loaded)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checkedAt = now
	switch {
	case err != nil:
		if r.err == nil || r.err.Error() != err.Error() {
			r.log.Error("revocation list unusable: refusing every certificate until it is fixed", "file", r.path, "err", err)
		}
		r.cur, r.err = nil, err
	case set != nil:
		r.cur, r.err = set, nil
		r.modTime, r.size = st.ModTime(), st.Size()
		r.log.Info("loaded certificate revocation list", "file", r.path, "serial_ranges", len(set.serials),
			"ids", len(set.ids), "keys", len(set.keys)+len(set.hashes))
	}
	return r.cur, r.err
}

// load reads and parses the file unless a list is loaded and the file's
// stamp still matches; it returns a nil set when nothing changed.
func (r *Revocations) load(modTime time.Time, size int64, loaded bool) (*revokedSet, os.FileInfo, error) {
	f, err := os.Open(r.path)
	if err != nil {
		return nil, nil, fmt.Errorf("opening revocation list: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("stat revocation list: %w", err)
	}
	if loaded && st.ModTime().Equal(modTime) && st.Size() == size {
		return nil, st, nil
	}
	data, err := io.ReadAll(io.LimitReader(f, maxRevocationFile+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading revocation list: %w", err)
	}
	if len(data) > maxRevocationFile {
		return nil, nil, fmt.Errorf("revocation list is larger than %d bytes", maxRevocationFile)
	}
	set, err := parseRevocations(data)
	if err != nil {
		return nil, nil, err
	}
	return set, st, nil
}

// parseRevocations parses the text format described on Revocations.
func parseRevocations(data []byte) (*revokedSet, error) {
	set := &revokedSet{ids: map[string]bool{}, keys: map[string]bool{}, hashes: map[string]bool{}}
	for n, line := range lines(data) {
		kind, value, ok := strings.Cut(string(line), ":")
		value = strings.TrimSpace(value)
		if !ok || value == "" {
			return nil, fmt.Errorf("revocation list line %d: want \"serial:\", \"id:\", \"key:\" or \"hash:\" and a value", n)
		}
		var err error
		switch strings.TrimSpace(kind) {
		case "serial":
			var sr serialRange
			sr, err = parseSerials(value)
			set.serials = append(set.serials, sr)
		case "id":
			set.ids[value] = true
		case "key":
			var key ssh.PublicKey
			key, _, _, _, err = ssh.ParseAuthorizedKey([]byte(value))
			if err == nil {
				if c, isCert := key.(*ssh.Certificate); isCert {
					key = c.Key
				}
				set.keys[string(key.Marshal())] = true
			}
		case "hash":
			if !strings.HasPrefix(value, "SHA256:") {
				err = errors.New("only SHA256 fingerprints are supported")
			}
			set.hashes[value] = true
		default:
			err = fmt.Errorf("unknown entry %q", strings.TrimSpace(kind))
		}
		if err != nil {
			return nil, fmt.Errorf("revocation list line %d: %w", n, err)
		}
	}
	return set, nil
}

// parseSerials reads "N" or "N-M".
func parseSerials(v string) (serialRange, error) {
	lo, hi, isRange := strings.Cut(v, "-")
	a, err := strconv.ParseUint(strings.TrimSpace(lo), 0, 64)
	if err != nil {
		return serialRange{}, fmt.Errorf("serial %q is not a number", lo)
	}
	b := a
	if isRange {
		if b, err = strconv.ParseUint(strings.TrimSpace(hi), 0, 64); err != nil {
			return serialRange{}, fmt.Errorf("serial %q is not a number", hi)
		}
		if b < a {
			return serialRange{}, fmt.Errorf("serial range %s is empty", v)
		}
	}
	return serialRange{a, b}, nil
}

// match returns the entry that revokes cert, or "".
func (s *revokedSet) match(cert *ssh.Certificate) string {
	for _, sr := range s.serials {
		if cert.Serial >= sr.lo && cert.Serial <= sr.hi {
			return "serial " + strconv.FormatUint(cert.Serial, 10)
		}
	}
	if s.ids[cert.KeyId] {
		return "id " + strconv.Quote(cert.KeyId)
	}
	for _, k := range []ssh.PublicKey{cert.Key, cert.SignatureKey} {
		if s.keys[string(k.Marshal())] || s.hashes[ssh.FingerprintSHA256(k)] {
			what := "key "
			if bytes.Equal(k.Marshal(), cert.SignatureKey.Marshal()) {
				what = "CA key "
			}
			return what + ssh.FingerprintSHA256(k)
		}
	}
	return ""
}
