package auth

import (
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/ssh"
)

// ParseCAKeys parses user CA public keys in OpenSSH's TrustedUserCAKeys
// format: one public key per line, with blank lines and # comments allowed.
// Unlike ParseAuthorizedKeys it skips nothing: a CA list with a line that
// is not a usable key is refused whole, naming the line, because trusting
// fewer CAs than the operator wrote would lock users out in silence and
// trusting a certificate or a DSA key as a CA would be a mistake.
func ParseCAKeys(data []byte) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for n, line := range lines(data) {
		key, _, options, rest, err := ssh.ParseAuthorizedKey(line)
		switch {
		case err != nil:
			return nil, fmt.Errorf("line %d: not an OpenSSH public key", n)
		case len(options) > 0:
			return nil, fmt.Errorf("line %d: options are not allowed before a CA key", n)
		case len(rest) > 0:
			return nil, fmt.Errorf("line %d: one key per line", n)
		}
		if err := checkCAKey(key); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if !slices.ContainsFunc(keys, func(k ssh.PublicKey) bool { return sameKey(k, key) }) {
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no CA key in the list")
	}
	return keys, nil
}

// checkCAKey refuses keys that cannot serve as a user CA.
func checkCAKey(key ssh.PublicKey) error {
	switch key.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384,
		ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256, ssh.KeyAlgoRSA:
		return nil
	case "ssh-dss": // ssh.KeyAlgoDSA, named by value: the constant is deprecated
		return errors.New("DSA keys are not accepted as CA keys")
	}
	if _, ok := key.(*ssh.Certificate); ok {
		return errors.New("a certificate cannot be a CA key")
	}
	return fmt.Errorf("key type %s is not accepted as a CA key", key.Type())
}

// sameKey reports whether a and b are the same public key.
func sameKey(a, b ssh.PublicKey) bool {
	return a.Type() == b.Type() && string(a.Marshal()) == string(b.Marshal())
}
