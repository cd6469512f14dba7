package recording

import (
	"testing"
)

// step is one event of a scripted terminal exchange: typed bytes (in) or
// shown bytes (out), and what the gate must let into the recording.
type step struct {
	in, out string
	keep    string
}

func runGate(t *testing.T, name string, steps []step, atClose string) *echoGate {
	t.Helper()
	var g echoGate
	for i, s := range steps {
		var got []byte
		if s.in != "" {
			got = g.input([]byte(s.in))
		} else {
			got = g.output([]byte(s.out))
		}
		if string(got) != s.keep {
			t.Errorf("%s, step %d (in %q, out %q): kept %q, want %q", name, i, s.in, s.out, got, s.keep)
		}
	}
	if got := g.close(); string(got) != atClose {
		t.Errorf("%s: close kept %q, want %q", name, got, atClose)
	}
	return &g
}

func TestEchoGate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		steps   []step
		atClose string
		dropped int64
	}{
		{"typed and echoed key by key", []step{
			{in: "l"}, {out: "l", keep: "l"}, {in: "s"}, {out: "s", keep: "s"},
			{in: "\r", keep: "\r"}, {out: "\r\nfile\r\n$ "},
		}, "", 0},
		{"sudo password: never echoed", []step{
			{out: "[sudo] password for user: "},
			{in: "h"}, {in: "u"}, {in: "n"}, {in: "t"}, {in: "e"}, {in: "r"}, {in: "2"},
			{in: "\r"},
			// The line break and the retry prompt contain none of it in
			// order; the Enter behind the password is kept.
			{out: "\r\n", keep: "\r"}, {out: "Sorry, try again.\r\n[sudo] password for user: "},
		}, "", 7},
		{"a password whose letters come back later, one at a time", []step{
			{in: "user"}, {in: "\r"}, {out: "\r\nSorry, try again.\r\n[sudo] password for user: ", keep: "\r"},
		}, "", 4},
		{"fast typing: the echo lags and splits", []step{
			{in: "l"}, {in: "s"}, {out: "l"}, {out: "s", keep: "ls"},
		}, "", 0},
		{"readline redraws with escape sequences around the echo", []step{
			{in: "x"}, {out: "\x1b[1@x", keep: "x"}, {in: "y"}, {out: "\x1b]0;title\x07y\x1b[K", keep: "y"},
		}, "", 0},
		{"an escape sequence split across writes", []step{
			{in: "z"}, {out: "\x1b["}, {out: "32mz", keep: "z"},
		}, "", 0},
		{"vi: commands are not shown, inserted text is", []step{
			{in: "i"}, {out: "\x1b[24;1H-- INSERT --\x1b[1;1H"}, {in: "hi"}, {out: "hi", keep: "hi"},
			{in: "\x1b", keep: "\x1b"}, {in: "dd"}, {out: "\x1b[24;1H\x1b[K"},
		}, "", 3},
		{"control keys pass at once, arrows whole", []step{
			{in: "\t", keep: "\t"}, {in: "\x1b[A", keep: "\x1b[A"}, {in: "\x03", keep: "\x03"},
		}, "", 0},
		{"control behind waiting input waits its turn", []step{
			{in: "ab"}, {in: "\x7f"}, {out: "ab", keep: "ab\x7f"},
		}, "", 0},
		{"input never answered is dropped at the end, controls kept", []step{
			{in: "secret"}, {in: "\r"},
		}, "\r", 6},
	} {
		g := runGate(t, tc.name, tc.steps, tc.atClose)
		if g.dropped != tc.dropped {
			t.Errorf("%s: dropped %d bytes, want %d", tc.name, g.dropped, tc.dropped)
		}
	}
}

func TestEchoGateBoundsWaitingInput(t *testing.T) {
	var g echoGate
	big := make([]byte, maxWaiting+10)
	for i := range big {
		big[i] = 'a'
	}
	g.input(big)
	if g.waiting != 0 || g.dropped != int64(len(big)) {
		t.Errorf("after %d unechoed bytes: waiting %d, dropped %d", len(big), g.waiting, g.dropped)
	}
}
