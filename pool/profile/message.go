package profile

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxMessageLen bounds a banner or message of the day: enough for a page
// of text, small enough that nobody pastes a file by mistake.
const MaxMessageLen = 8 << 10

// NormalizeMessage turns CRLF line ends into LF, so that a file written on
// Windows is not refused for its carriage returns.
func NormalizeMessage(text string) string {
	return strings.ReplaceAll(text, "\r\n", "\n")
}

// CheckMessage reports why text cannot be a banner or message of the day
// (after NormalizeMessage): it must be valid UTF-8 of at most
// MaxMessageLen bytes without control characters other than tab and
// newline (an escape sequence in a banner is either a mistake or an
// attempt on the user's terminal). With placeholders set, every {word} in
// it must be {user} or {profile} (what sshfront replaces), so that a typo
// such as {usr} is reported rather than shown to every user.
func CheckMessage(text string, placeholders bool) error {
	if len(text) > MaxMessageLen {
		return fmt.Errorf("%d bytes, limit %d", len(text), MaxMessageLen)
	}
	if !utf8.ValidString(text) {
		return errors.New("not valid UTF-8")
	}
	for i, r := range text {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return fmt.Errorf("control character %U at byte %d; only tab and newline are allowed", r, i)
		}
	}
	if !placeholders {
		return nil
	}
	// A {word} that looks meant to be substituted must be {user} or
	// {profile}, the ones sshfront replaces.
	for _, m := range regexp.MustCompile(`\{[A-Za-z_][A-Za-z0-9_]*\}`).FindAllString(text, -1) {
		if m != "{user}" && m != "{profile}" {
			return fmt.Errorf("unknown placeholder %s; known: {user}, {profile}", m)
		}
	}
	return nil
}
