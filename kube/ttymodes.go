package kube

import (
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/scheduler"
)

// Terminal modes. An SSH client's pty-req carries its terminal's modes
// (RFC 4254 section 8). A prepared terminal stream already has a terminal,
// whose settings the wrapper reported at preparation (`stty -g`, in the
// ready line); the spec applies, with one stty, only the modes that differ
// from those. A typical client differs in none (the wrapper sets iutf8 at
// preparation, as UTF-8 terminals do), so a login forks no stty.

// termState is a terminal's settings as `stty -g` prints them (GNU
// coreutils and BusyBox alike): the input, output, control and local flag
// words, then the control characters, all in hex, colon-separated.
type termState struct {
	iflag, oflag, lflag uint64
	cc                  []uint64
}

// parseTermState parses `stty -g` output; ok is false when it is not that.
func parseTermState(s string) (termState, bool) {
	f := strings.Split(strings.TrimSpace(s), ":")
	if len(f) < 4+ccEOL2+1 {
		return termState{}, false
	}
	v := make([]uint64, len(f))
	for i, x := range f {
		n, err := strconv.ParseUint(x, 16, 64)
		if err != nil {
			return termState{}, false
		}
		v[i] = n
	}
	return termState{iflag: v[0], oflag: v[1], lflag: v[3], cc: v[4:]}, true
}

// defaultTermState is the Linux kernel's initial pty settings
// (tty_std_termios), assumed when the wrapper could not report its own
// (no stty in the image).
func defaultTermState() termState {
	return termState{
		iflag: 0x500, oflag: 0x5, lflag: 0x8a3b,
		cc: []uint64{3, 0x1c, 0x7f, 0x15, 4, 0, 1, 0, 0x11, 0x13, 0x1a, 0, 0x12, 0x0f, 0x17, 0x16, 0},
	}
}

// Which termios word a flag lives in.
const (
	wordI = iota
	wordO
	wordL
)

// ttyFlag is one boolean mode: its stty name and its Linux bit.
type ttyFlag struct {
	name string
	word int
	bit  uint64
}

// ttyChar is one special character: its stty name and its Linux c_cc index.
type ttyChar struct {
	name  string
	index int
}

// Linux c_cc indexes used below.
const (
	ccVINTR = iota
	ccVQUIT
	ccVERASE
	ccVKILL
	ccVEOF
	ccVTIME
	ccVMIN
	ccVSWTC
	ccVSTART
	ccVSTOP
	ccVSUSP
	ccVEOL
	ccVREPRINT
	ccVDISCARD
	ccVWERASE
	ccVLNEXT
	ccEOL2
)

// ttyFlagOf maps the RFC 4254 boolean modes that both GNU and BusyBox stty
// accept, and that mean something on a Linux pty, to their bits.
func ttyFlagOf(op uint8) (ttyFlag, bool) {
	switch op {
	case ssh.IGNPAR:
		return ttyFlag{"ignpar", wordI, 0x4}, true
	case ssh.PARMRK:
		return ttyFlag{"parmrk", wordI, 0x8}, true
	case ssh.INPCK:
		return ttyFlag{"inpck", wordI, 0x10}, true
	case ssh.ISTRIP:
		return ttyFlag{"istrip", wordI, 0x20}, true
	case ssh.INLCR:
		return ttyFlag{"inlcr", wordI, 0x40}, true
	case ssh.IGNCR:
		return ttyFlag{"igncr", wordI, 0x80}, true
	case ssh.ICRNL:
		return ttyFlag{"icrnl", wordI, 0x100}, true
	case ssh.IXON:
		return ttyFlag{"ixon", wordI, 0x400}, true
	case ssh.IXANY:
		return ttyFlag{"ixany", wordI, 0x800}, true
	case ssh.IXOFF:
		return ttyFlag{"ixoff", wordI, 0x1000}, true
	case ssh.IMAXBEL:
		return ttyFlag{"imaxbel", wordI, 0x2000}, true
	case ssh.IUTF8:
		return ttyFlag{"iutf8", wordI, 0x4000}, true
	case ssh.ISIG:
		return ttyFlag{"isig", wordL, 0x1}, true
	case ssh.ICANON:
		return ttyFlag{"icanon", wordL, 0x2}, true
	case ssh.ECHO:
		return ttyFlag{"echo", wordL, 0x8}, true
	case ssh.ECHOE:
		return ttyFlag{"echoe", wordL, 0x10}, true
	case ssh.ECHOK:
		return ttyFlag{"echok", wordL, 0x20}, true
	case ssh.ECHONL:
		return ttyFlag{"echonl", wordL, 0x40}, true
	case ssh.NOFLSH:
		return ttyFlag{"noflsh", wordL, 0x80}, true
	case ssh.TOSTOP:
		return ttyFlag{"tostop", wordL, 0x100}, true
	case ssh.ECHOCTL:
		return ttyFlag{"echoctl", wordL, 0x200}, true
	case ssh.ECHOKE:
		return ttyFlag{"echoke", wordL, 0x800}, true
	case ssh.IEXTEN:
		return ttyFlag{"iexten", wordL, 0x8000}, true
	case ssh.OPOST:
		return ttyFlag{"opost", wordO, 0x1}, true
	case ssh.ONLCR:
		return ttyFlag{"onlcr", wordO, 0x4}, true
	case ssh.OCRNL:
		return ttyFlag{"ocrnl", wordO, 0x8}, true
	case ssh.ONOCR:
		return ttyFlag{"onocr", wordO, 0x10}, true
	case ssh.ONLRET:
		return ttyFlag{"onlret", wordO, 0x20}, true
	}
	return ttyFlag{}, false
}

// ttyCharOf maps the RFC 4254 special characters to theirs.
func ttyCharOf(op uint8) (ttyChar, bool) {
	switch op {
	case ssh.VINTR:
		return ttyChar{"intr", ccVINTR}, true
	case ssh.VQUIT:
		return ttyChar{"quit", ccVQUIT}, true
	case ssh.VERASE:
		return ttyChar{"erase", ccVERASE}, true
	case ssh.VKILL:
		return ttyChar{"kill", ccVKILL}, true
	case ssh.VEOF:
		return ttyChar{"eof", ccVEOF}, true
	case ssh.VEOL:
		return ttyChar{"eol", ccVEOL}, true
	case ssh.VEOL2:
		return ttyChar{"eol2", ccEOL2}, true
	case ssh.VSTART:
		return ttyChar{"start", ccVSTART}, true
	case ssh.VSTOP:
		return ttyChar{"stop", ccVSTOP}, true
	case ssh.VSUSP:
		return ttyChar{"susp", ccVSUSP}, true
	case ssh.VREPRINT:
		return ttyChar{"rprnt", ccVREPRINT}, true
	case ssh.VWERASE:
		return ttyChar{"werase", ccVWERASE}, true
	case ssh.VLNEXT:
		return ttyChar{"lnext", ccVLNEXT}, true
	case ssh.VDISCARD:
		return ttyChar{"discard", ccVDISCARD}, true
	}
	return ttyChar{}, false
}

// sttySize is the stty arguments that set a terminal's size, none for
// a size the client left unset (0).
func sttySize(ws scheduler.WindowSize) []string {
	if ws.Rows == 0 || ws.Cols == 0 {
		return nil
	}
	return []string{"rows", strconv.Itoa(int(ws.Rows)), "cols", strconv.Itoa(int(ws.Cols))}
}

// sttyModes turns the requested modes that differ from cur into stty
// arguments, in opcode order; none when the terminal already matches.
// Speeds and character size are ignored. Every argument is a fixed word or
// a quoted control character, never client text.
func sttyModes(modes map[uint8]uint32, cur termState) []string {
	ops := make([]uint8, 0, len(modes))
	for op := range modes {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	var args []string
	for _, op := range ops {
		v := modes[op]
		if c, ok := ttyCharOf(op); ok {
			want := uint64(v)
			if v >= 255 {
				want = 0 // SSH's "disabled" is Linux's _POSIX_VDISABLE
			}
			if c.index < len(cur.cc) && cur.cc[c.index] == want {
				continue
			}
			args = append(args, c.name, shellQuote(ttyCharValue(v)))
			continue
		}
		f, ok := ttyFlagOf(op)
		if !ok {
			continue
		}
		word := cur.iflag
		switch f.word {
		case wordO:
			word = cur.oflag
		case wordL:
			word = cur.lflag
		}
		if (word&f.bit != 0) == (v != 0) {
			continue
		}
		if v == 0 {
			args = append(args, "-"+f.name)
		} else {
			args = append(args, f.name)
		}
	}
	return args
}

// ttyCharValue renders a special character the way both stty
// implementations parse it unambiguously: "undef" for disabled (SSH sends
// 255; 0 is Linux's _POSIX_VDISABLE), caret notation for control characters,
// the character itself when printable, else a three-digit decimal.
func ttyCharValue(v uint32) string {
	switch {
	case v == 0 || v >= 255:
		return "undef"
	case v < 32:
		return "^" + string(rune('@'+v))
	case v == 127:
		return "^?"
	case v < 127:
		return string(rune(v))
	default:
		return strconv.Itoa(int(v))
	}
}
