package recording

import "bytes"

// echoGate decides which typed bytes an input recording keeps.
//
// The rule is that input typed while the terminal had echo off (a
// password) is never recorded. podgate cannot read the terminal settings
// of the pty inside the pod, where the guest turns echo off and on: the
// client's pty-req only gives the initial modes, and at every shell prompt
// readline turns echo off anyway, to echo by itself. What podgate does see
// is what comes back, and a key the terminal shows comes back at once. So
// the gate keeps printable input only when the next output after it,
// terminal escape sequences aside, begins with exactly those bytes; any
// other output first (a password prompt's line break, an error message,
// another program's output) drops it, and so does the end of the session.
// Control keys (Enter, Tab, ^C, arrows, function keys) carry no secret
// text and are kept as typed, in order behind any printable input that
// is still waiting.
//
// What this guarantees: a printable byte is recorded only if the guest
// wrote the same bytes to the terminal right after it was typed, which a
// program reading a password does not do. What it loses: keys a program
// takes without showing them (vi commands, less navigation by letters),
// and input typed ahead of the echo of earlier input.
//
// The gate is a state machine over two streams; it is not safe for
// concurrent use (Session serialises it).
type echoGate struct {
	runs    []inputRun // waiting, oldest first
	waiting int        // bytes in runs
	strip   escStripper
	// dropped counts printable bytes left out of the recording.
	dropped int64
}

// inputRun is typed input of one class: printable bytes, or control bytes
// (one key or several).
type inputRun struct {
	b       []byte
	control bool
	matched int // bytes of b already seen in the output
}

// maxWaiting bounds the input held back while no output arrives; beyond
// it the oldest printable input is dropped, since a terminal that shows
// nothing of 4 KiB of typing is not echoing.
const maxWaiting = 4 << 10

// input takes typed bytes and returns those that may be recorded now.
func (g *echoGate) input(p []byte) []byte {
	for len(p) > 0 {
		n, control := nextRun(p)
		g.add(p[:n], control)
		p = p[n:]
	}
	for g.waiting > maxWaiting {
		g.dropHead()
	}
	return g.release()
}

// add queues one run, merging it with the last one of its class so that a
// password typed key by key is matched as a whole, not letter by letter.
func (g *echoGate) add(b []byte, control bool) {
	g.waiting += len(b)
	if n := len(g.runs); n > 0 && g.runs[n-1].control == control && g.runs[n-1].matched == 0 {
		g.runs[n-1].b = append(g.runs[n-1].b, b...)
		return
	}
	g.runs = append(g.runs, inputRun{b: append([]byte(nil), b...), control: control})
}

// output takes bytes the terminal shows and returns the input that they
// echo, to be recorded just before them.
func (g *echoGate) output(p []byte) []byte {
	if len(g.runs) == 0 {
		// Nothing waits for an echo: only the escape state matters.
		g.strip.skip(p)
		return nil
	}
	shown := g.strip.strip(p)
	var keep []byte
	for len(shown) > 0 && len(g.runs) > 0 {
		r := &g.runs[0]
		if r.control {
			break
		}
		want := r.b[r.matched:]
		n := min(len(want), len(shown))
		if !bytes.Equal(want[:n], shown[:n]) {
			g.dropHead()
			keep = append(keep, g.release()...)
			break
		}
		r.matched += n
		shown = shown[n:]
		if r.matched == len(r.b) {
			keep = append(keep, r.b...)
			g.pop()
			keep = append(keep, g.release()...)
		}
	}
	return keep
}

// close drops the printable input still waiting and returns the control
// keys behind it.
func (g *echoGate) close() []byte {
	var keep []byte
	for len(g.runs) > 0 {
		if g.runs[0].control {
			keep = append(keep, g.runs[0].b...)
			g.pop()
		} else {
			g.dropHead()
		}
	}
	return keep
}

// release returns the control runs at the head of the queue.
func (g *echoGate) release() []byte {
	var keep []byte
	for len(g.runs) > 0 && g.runs[0].control {
		keep = append(keep, g.runs[0].b...)
		g.pop()
	}
	return keep
}

// dropHead removes the oldest run, counting it when it was printable.
func (g *echoGate) dropHead() {
	if !g.runs[0].control {
		g.dropped += int64(len(g.runs[0].b))
	}
	g.pop()
}

func (g *echoGate) pop() {
	g.waiting -= len(g.runs[0].b)
	g.runs[0] = inputRun{}
	g.runs = g.runs[1:]
}

// nextRun returns the length of the run at the start of p and whether it
// is control input: one escape sequence, or C0 controls and DEL, or
// everything up to the next of those.
func nextRun(p []byte) (int, bool) {
	if p[0] == esc {
		return escLen(p), true
	}
	isControl := func(c byte) bool { return c < 0x20 || c == 0x7f }
	control := isControl(p[0])
	n := 1
	for n < len(p) && p[n] != esc && isControl(p[n]) == control {
		n++
	}
	return n, control
}

const esc = 0x1b

// escLen is the length of the escape sequence at the start of p (which
// begins with ESC): CSI (ESC [ ... final byte), SS3 (ESC O x), or ESC and
// one byte; a truncated sequence runs to the end of p.
func escLen(p []byte) int {
	if len(p) < 2 {
		return len(p)
	}
	switch p[1] {
	case '[':
		for i := 2; i < len(p); i++ {
			if p[i] >= 0x40 && p[i] <= 0x7e {
				return i + 1
			}
		}
		return len(p)
	case 'O':
		return min(3, len(p))
	}
	return 2
}

// escStripper removes terminal escape sequences from an output stream
// whose sequences may be split across writes: CSI sequences, OSC strings
// (ended by BEL or ESC \), and two-byte escapes.
type escStripper struct {
	state escState
}

type escState int

const (
	escNone escState = iota
	escStart
	escCSI
	escOSC
	escOSCEnd // ESC seen inside an OSC string
)

// strip returns p without its escape sequences, in a fresh slice.
func (s *escStripper) strip(p []byte) []byte {
	out := make([]byte, 0, len(p))
	for _, c := range p {
		if s.next(c) {
			out = append(out, c)
		}
	}
	return out
}

// skip follows p's escape sequences without keeping anything.
func (s *escStripper) skip(p []byte) {
	for _, c := range p {
		s.next(c)
	}
}

// next advances the state machine by one byte and reports whether the
// byte is shown text rather than part of an escape sequence.
func (s *escStripper) next(c byte) bool {
	switch s.state {
	case escNone:
		if c == esc {
			s.state = escStart
			return false
		}
		return true
	case escStart:
		switch c {
		case '[':
			s.state = escCSI
		case ']':
			s.state = escOSC
		default:
			s.state = escNone
		}
	case escCSI:
		if c >= 0x40 && c <= 0x7e {
			s.state = escNone
		}
	case escOSC:
		switch c {
		case 0x07:
			s.state = escNone
		case esc:
			s.state = escOSCEnd
		}
	case escOSCEnd:
		s.state = escNone
	}
	return false
}
