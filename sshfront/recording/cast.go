package recording

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// The asciicast v2 format (https://docs.asciinema.org/manual/asciicast/v2/):
// newline-delimited JSON, a header object on the first line, then one
// event per line as a three-element array [time, code, data], where time
// is seconds since the start as a float, code is "o" (output), "i"
// (input), "r" (resize, data "COLSxROWS") or "m" (marker, data a label),
// and data is a string.

// Event codes.
const (
	codeOutput = 'o'
	codeInput  = 'i'
	codeResize = 'r'
	codeMarker = 'm'
)

// castHeader is the first line of a cast.
type castHeader struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp"`
	Command   string            `json:"command,omitempty"`
	Title     string            `json:"title,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
}

// headerLine encodes h as the cast's first line.
func headerLine(h castHeader) []byte {
	h.Version = 2
	b, _ := json.Marshal(h) // a struct of strings and numbers always encodes
	return append(b, '\n')
}

// appendEvent appends the event line [t, "code", data] to b. data must be
// valid UTF-8 (see utf8Carry).
func appendEvent[T string | []byte](b []byte, t time.Duration, code byte, data T) []byte {
	b = append(b, '[')
	b = strconv.AppendFloat(b, t.Seconds(), 'f', 6, 64)
	b = append(b, ", \""...)
	b = append(b, code)
	b = append(b, "\", "...)
	b = appendJSONString(b, data)
	return append(b, "]\n"...)
}

// appendJSONString appends s as a JSON string. It is written out rather
// than left to encoding/json because it runs on every chunk of terminal
// output; FuzzAppendJSONString checks it against encoding/json.
func appendJSONString[T string | []byte](b []byte, s T) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !jsonEscaped[c] {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jsonEscaped marks the bytes a JSON string cannot hold as they are:
// control characters, the quote and the backslash. It is a read-only
// table (a lookup is about a third faster than the comparisons, on every
// byte of terminal output).
var jsonEscaped = [256]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true, 9: true, 10: true, 11: true, 12: true, 13: true, 14: true, 15: true, 16: true, 17: true, 18: true, 19: true, 20: true, 21: true, 22: true, 23: true, 24: true, 25: true, 26: true, 27: true, 28: true, 29: true, 30: true, 31: true, '"': true, '\\': true}

// utf8Carry turns a byte stream into valid UTF-8 strings chunk by chunk: a
// character split across two writes is held back until it is complete, and
// bytes that can never form a character become U+FFFD, as asciinema's own
// recorder decodes them.
type utf8Carry struct {
	held []byte
}

// text returns the complete characters of the stream so far. The result
// may share p's memory: use it before p changes.
func (c *utf8Carry) text(p []byte) []byte {
	if len(c.held) > 0 {
		p = append(c.held, p...)
		c.held = nil
	}
	cut := len(p)
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				cut = i
			}
			break
		}
	}
	if cut < len(p) {
		c.held = append([]byte(nil), p[cut:]...)
	}
	if !utf8.Valid(p[:cut]) {
		return []byte(toValidUTF8(string(p[:cut])))
	}
	return p[:cut]
}

// flush returns what is held back, as replacement characters.
func (c *utf8Carry) flush() string {
	if len(c.held) == 0 {
		return ""
	}
	s := toValidUTF8(string(c.held))
	c.held = nil
	return s
}

// toValidUTF8 replaces each invalid byte with U+FFFD.
func toValidUTF8(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		out = append(out, r) // range yields U+FFFD for each invalid byte
	}
	return string(out)
}
