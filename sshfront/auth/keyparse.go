package auth

import (
	"bytes"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// ParseAuthorizedKeys parses OpenSSH authorized_keys content. Invalid lines
// and lines carrying options are skipped; skipped describes each one by line
// number and reason (never by content, which may be sensitive). It never
// panics on any input.
func ParseAuthorizedKeys(data []byte) (keys []ssh.PublicKey, skipped []string) {
	for n, line := range lines(data) {
		key, reason := parseKeyLine(line)
		if reason != "" {
			skipped = append(skipped, fmt.Sprintf("line %d: %s", n, reason))
			continue
		}
		if key != nil {
			keys = append(keys, key)
		}
	}
	return keys, skipped
}

// ParseUserKeys parses the single-file layout: each line is a user name, a
// space, and an authorized_keys entry without options. User names must be
// canonical (see ValidName).
func ParseUserKeys(data []byte) (byUser map[string][]ssh.PublicKey, skipped []string) {
	byUser = make(map[string][]ssh.PublicKey)
	for n, line := range lines(data) {
		user, rest, ok := strings.Cut(strings.TrimLeft(string(line), " \t"), " ")
		if user == "" {
			continue
		}
		if !ok || !ValidName(user) {
			skipped = append(skipped, fmt.Sprintf("line %d: invalid user name", n))
			continue
		}
		key, reason := parseKeyLine([]byte(rest))
		if reason != "" || key == nil {
			if reason == "" {
				reason = "missing key"
			}
			skipped = append(skipped, fmt.Sprintf("line %d: %s", n, reason))
			continue
		}
		byUser[user] = append(byUser[user], key)
	}
	return byUser, skipped
}

// lines yields the non-comment lines of data with their 1-based numbers.
func lines(data []byte) func(yield func(int, []byte) bool) {
	return func(yield func(int, []byte) bool) {
		for n := 1; len(data) > 0; n++ {
			var line []byte
			line, data, _ = bytes.Cut(data, []byte("\n"))
			line = bytes.TrimSpace(line)
			if len(line) == 0 || line[0] == '#' {
				continue
			}
			if !yield(n, line) {
				return
			}
		}
	}
}

// parseKeyLine parses one authorized_keys line. It returns a nil key and an
// empty reason for lines that hold nothing.
func parseKeyLine(line []byte) (ssh.PublicKey, string) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] == '#' {
		return nil, ""
	}
	key, _, options, rest, err := ssh.ParseAuthorizedKey(line)
	switch {
	case err != nil:
		return nil, "not a valid public key"
	case len(options) > 0:
		return nil, "authorized_keys options are not supported"
	case len(bytes.TrimSpace(rest)) > 0:
		return nil, "trailing data"
	}
	return key, ""
}
