package sshfront

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/podgate/podgate/scheduler"
)

// Limits on what a client may send in channel requests.
const (
	maxTermLen     = 64
	maxTermSize    = 1000
	maxEnvNameLen  = 64
	maxEnvValueLen = 4 << 10
	maxEnvVars     = 64
	maxCommandLen  = 256 << 10
	maxSubsystem   = 64
	maxHostLen     = 255
	defaultTerm    = "xterm"
)

// errMalformed means a request payload does not follow RFC 4254.
var errMalformed = errors.New("malformed request payload")

// wire reads RFC 4251 data types from a request payload, remembering the
// first error so parsers can check once at the end.
type wire struct {
	b   []byte
	err error
}

func (w *wire) uint32() uint32 {
	if w.err != nil || len(w.b) < 4 {
		w.err = errMalformed
		return 0
	}
	v := binary.BigEndian.Uint32(w.b)
	w.b = w.b[4:]
	return v
}

func (w *wire) string(max int) string {
	n := w.uint32()
	if w.err != nil {
		return ""
	}
	if uint64(n) > uint64(len(w.b)) || uint64(n) > uint64(max) {
		w.err = errMalformed
		return ""
	}
	s := string(w.b[:n])
	w.b = w.b[n:]
	return s
}

// done reports the first error, or trailing bytes as one.
func (w *wire) done() error {
	if w.err == nil && len(w.b) != 0 {
		return errMalformed
	}
	return w.err
}

// clampSize keeps a terminal dimension within 1..maxTermSize.
func clampSize(v uint32) uint16 {
	return uint16(min(max(v, 1), maxTermSize))
}

// parsePtyReq parses a pty-req payload. Sizes are clamped and pixel sizes
// ignored; a TERM that is too long or not printable ASCII is replaced by
// "xterm" and reported through termReplaced so the caller can log it.
func parsePtyReq(payload []byte) (pty scheduler.Pty, termReplaced bool, err error) {
	w := wire{b: payload}
	term := w.string(len(payload))
	cols, rows := w.uint32(), w.uint32()
	w.uint32() // width in pixels, ignored
	w.uint32() // height in pixels, ignored
	modes := w.string(len(payload))
	if err := w.done(); err != nil {
		return scheduler.Pty{}, false, fmt.Errorf("pty-req: %w", err)
	}
	if !validTerm(term) {
		term, termReplaced = defaultTerm, true
	}
	return scheduler.Pty{
		Term:  term,
		Size:  scheduler.WindowSize{Cols: clampSize(cols), Rows: clampSize(rows)},
		Modes: parseModes([]byte(modes)),
	}, termReplaced, nil
}

func validTerm(t string) bool {
	if t == "" || len(t) > maxTermLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] > '~' {
			return false
		}
	}
	return true
}

// parseModes decodes RFC 4254 section 8 terminal modes: opcode bytes 1..159
// each followed by a uint32, ended by TTY_OP_END (0). Parsing stops at the
// end, at a truncated value, or at an opcode of 160 or more, whose argument
// format the RFC leaves undefined; what was read until then is kept.
func parseModes(b []byte) map[uint8]uint32 {
	modes := make(map[uint8]uint32)
	for len(b) >= 5 {
		op := b[0]
		if op == 0 || op >= 160 {
			break
		}
		modes[op] = binary.BigEndian.Uint32(b[1:5])
		b = b[5:]
	}
	return modes
}

// parseWindowChange parses a window-change payload, clamping the size.
func parseWindowChange(payload []byte) (scheduler.WindowSize, error) {
	w := wire{b: payload}
	cols, rows := w.uint32(), w.uint32()
	w.uint32()
	w.uint32()
	if err := w.done(); err != nil {
		return scheduler.WindowSize{}, fmt.Errorf("window-change: %w", err)
	}
	return scheduler.WindowSize{Cols: clampSize(cols), Rows: clampSize(rows)}, nil
}

// parseEnv parses an env payload. Names must look like shell variable names
// and values must not contain NUL, which no process environment can hold.
func parseEnv(payload []byte) (name, value string, err error) {
	w := wire{b: payload}
	name = w.string(maxEnvNameLen)
	value = w.string(maxEnvValueLen)
	if err := w.done(); err != nil {
		return "", "", fmt.Errorf("env: %w", err)
	}
	if !validEnvName(name) {
		return "", "", fmt.Errorf("env: invalid variable name: %w", errMalformed)
	}
	if strings.IndexByte(value, 0) >= 0 {
		return "", "", fmt.Errorf("env: NUL in value: %w", errMalformed)
	}
	return name, value, nil
}

func validEnvName(s string) bool {
	if s == "" || len(s) > maxEnvNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// parseExec parses an exec payload. The command is passed on as one
// argument, so the only thing refused is NUL, which no argv can carry.
func parseExec(payload []byte) (string, error) {
	w := wire{b: payload}
	cmd := w.string(maxCommandLen)
	if err := w.done(); err != nil {
		return "", fmt.Errorf("exec: %w", err)
	}
	if strings.IndexByte(cmd, 0) >= 0 {
		return "", fmt.Errorf("exec: NUL in command: %w", errMalformed)
	}
	return cmd, nil
}

// parseSubsystem parses a subsystem payload; names are short and printable.
func parseSubsystem(payload []byte) (string, error) {
	w := wire{b: payload}
	name := w.string(maxSubsystem)
	if err := w.done(); err != nil {
		return "", fmt.Errorf("subsystem: %w", err)
	}
	if !validTerm(name) {
		return "", fmt.Errorf("subsystem: invalid name: %w", errMalformed)
	}
	return name, nil
}

// parseSignal parses a signal payload and accepts only the signal names
// RFC 4254 section 6.10 lists.
func parseSignal(payload []byte) (string, error) {
	w := wire{b: payload}
	name := w.string(16)
	if err := w.done(); err != nil {
		return "", fmt.Errorf("signal: %w", err)
	}
	switch name {
	case "ABRT", "ALRM", "FPE", "HUP", "ILL", "INT", "KILL", "PIPE", "QUIT", "SEGV", "TERM", "USR1", "USR2":
		return name, nil
	}
	return "", fmt.Errorf("signal: unknown signal: %w", errMalformed)
}

// parseDirectTCPIP parses a direct-tcpip channel-open payload.
func parseDirectTCPIP(payload []byte) (host string, port uint16, err error) {
	w := wire{b: payload}
	host = w.string(maxHostLen)
	p := w.uint32()
	w.string(maxHostLen) // originator address
	w.uint32()           // originator port
	if err := w.done(); err != nil {
		return "", 0, fmt.Errorf("direct-tcpip: %w", err)
	}
	if p == 0 || p > 65535 {
		return "", 0, fmt.Errorf("direct-tcpip: port %d out of range: %w", p, errMalformed)
	}
	return host, uint16(p), nil
}

// exitStatusPayload encodes an exit-status request.
func exitStatusPayload(code int) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(code))
}

// exitSignalPayload encodes an exit-signal request.
func exitSignalPayload(signal string) []byte {
	b := appendString(nil, signal)
	b = append(b, 0) // core dumped: false
	b = appendString(b, "")
	return appendString(b, "")
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
