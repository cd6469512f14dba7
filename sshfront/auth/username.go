package auth

import (
	"errors"
	"fmt"
	"strings"
)

// MaxUserLen is the longest accepted user name, not counting "+profile".
const MaxUserLen = 64

// ErrBadLogin means a login name was refused before any credential check.
var ErrBadLogin = errors.New("invalid login name")

// ParseLogin splits an SSH login name of the form "user" or "user+profile"
// and returns both parts in canonical form. Names are checked byte by byte
// against [A-Za-z0-9._-] before lower-casing: lower-casing Unicode first would
// let look-alikes such as the Kelvin sign (U+212A) turn into ASCII letters
// and impersonate another user. The first character must be a letter or digit
// so that names like "." or ".." can never be used as file names.
func ParseLogin(login string) (user, profile string, err error) {
	user, profile, hasProfile := strings.Cut(login, "+")
	if err := checkName(user, MaxUserLen); err != nil {
		return "", "", fmt.Errorf("user part: %w", err)
	}
	if hasProfile {
		if err := checkName(profile, MaxUserLen); err != nil {
			return "", "", fmt.Errorf("profile part: %w", err)
		}
	}
	return strings.ToLower(user), strings.ToLower(profile), nil
}

// ValidName reports whether s is acceptable as a canonical user or profile
// name, for example one returned by a webhook.
func ValidName(s string) bool {
	return checkName(s, MaxUserLen) == nil && s == strings.ToLower(s)
}

func checkName(s string, maxLen int) error {
	if s == "" {
		return fmt.Errorf("empty: %w", ErrBadLogin)
	}
	if len(s) > maxLen {
		return fmt.Errorf("longer than %d bytes: %w", maxLen, ErrBadLogin)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("must start with a letter or digit: %w", ErrBadLogin)
		}
		if !alnum && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("byte 0x%02x at %d not allowed: %w", c, i, ErrBadLogin)
		}
	}
	return nil
}
