package scheduler

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// UserKey is the key under which a user's pods in one profile are parked for
// a reconnect and counted against the per-user limit, on every replica. It is
// a hash, not the login name: pods carry it as a label, which any replica's
// informer indexes, and a label value must be short and of a fixed alphabet.
//
// Canonical identity. user is the authenticated user as the auth source
// returned it (sshfront/auth), never the raw login name:
//   - case: ParseLogin lower-cases the ASCII user part, and a webhook's
//     answer must already be lower-case (auth.ValidName), so "Alice" and
//     "alice" are one user, who must hold alice's credentials to log in;
//   - Unicode: refused before any credential is checked (only
//     [A-Za-z0-9._-] passes), so no look-alike (Cyrillic а, the Kelvin sign,
//     NFC against NFD forms) ever reaches this function from a login;
//   - "user+profile": the suffix is cut off before authentication; profile
//     here is the profile the login resolved to (Policy.Name), so "alice" and
//     "alice+default" are the same key, and alice's pods in another profile
//     are under another key.
//
// The key is computed over the exact bytes, with no folding or
// normalisation of its own: should another auth source hand over names that
// differ only in case or Unicode form, they stay apart (a reconnect then
// misses, which is safe), never merged. Both parts are length-prefixed, so no
// choice of bytes in one part can shift into the other.
func UserKey(user, profile string) string {
	h := sha256.New()
	h.Write([]byte("podgate user key v1\x00"))
	var n [8]byte
	for _, part := range []string{user, profile} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write([]byte(part))
	}
	// 24 bytes (192 bits) as 48 hex digits fit a label value (63).
	return hex.EncodeToString(h.Sum(nil)[:24])
}
