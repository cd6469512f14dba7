package kube

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/podgate/podgate/scheduler"
)

// The pod-side wrapper.
//
// Every exec podgate opens runs the same small POSIX sh program (it must work
// with dash, bash and BusyBox ash, and uses only sh builtins, plus stty, tty
// and id -un before the hello: while a stream is prepared, before any user
// is waiting). It
//
//  1. for a terminal, sets iutf8 (as UTF-8 client terminals have it),
//     records the terminal's settings with `stty -g`, looks up the
//     terminal's device, and defines a variable per control character
//     (podgate_c1 ... podgate_c31, podgate_c127) with one printf; for every
//     stream, it looks up the pod's account (see Environment below). These
//     are the wrapper's only forks. The terminal stays in its normal
//     (cooked) mode;
//  2. waits for a hello line on stdin, then prints the ready line
//     "PODGATE-READY <pid> [<stty -g>]\n", which tells podgate that the stream
//     is open, which PID the command will have (sh's exec keeps the PID)
//     and, for a terminal, its settings. The hello closes a race in
//     client-go's WebSocket executor (SPDY streams still go through
//     client-go), which starts reading the connection before it has
//     registered its streams and drops any output that arrives in between:
//     client-go sends stdin only after every stream exists, so output that
//     follows the hello is never lost;
//  3. reads the spec: a decimal line count N on a line of its own, then N
//     lines of sh that podgate generated, using only the read builtin. read
//     consumes a pipe or terminal one byte at a time, so the user's stdin
//     that podgate splices in right after the spec on a plain stream is never
//     swallowed (this is why the framing is not "head -c N": BusyBox head
//     reads through stdio and over-reads). Each byte is one read(2) from a
//     buffer already filled: the read costs well under a millisecond;
//  4. on a terminal, prints the go line "\037PODGATE-GO\n": the terminal
//     echoed the spec, and podgate drops the output up to this line, which an
//     echo cannot contain (an echoed control character is shown as ^X);
//     podgate starts copying the user's stdin only once it has seen it, so
//     nothing the user types reaches the line discipline while the wrapper
//     reads;
//  5. evals the spec, whose last word is exec, so the user's command
//     replaces the shell and its exit status is the command's own.
//
// Environment. Before the hello (so, for a prepared stream, before any
// user arrives) the wrapper also looks up what sshd would put in a login's
// environment and podgate cannot know from outside: the name of the
// account the pod runs as (id -un) and, for a terminal, the terminal's
// device (tty). These forks, like step 1's, happen while the stream is
// prepared. The spec exports them as USER and LOGNAME, and SSH_TTY, after
// the caller's variables, so they always describe the pod as the command
// sees it; when the pod's uid has no name the caller's USER and LOGNAME
// stand.
//
// Quoting. The spec quotes every argument and every environment value in
// double quotes, with $ ` " and \ escaped, so the user's command is only
// ever one argv element and arbitrary bytes (quotes, newlines, $(...),
// control characters) stay inert. NUL cannot be represented in an argv or
// environment and is rejected. No physical line is longer than
// maxSpecLine: a longer one is split by a backslash-newline, which the shell
// removes, between two words or inside a quoted word.
//
// Terminals. A terminal in its normal mode interprets what it reads: ^C
// interrupts, ^U erases the line, ^S stops the output (even ahead of the
// line discipline, when its buffer is full), and a line holds at most 4095
// bytes. A terminal spec therefore holds no control character but its line
// ends: one in a value is written as the variable the wrapper defined for
// it (${podgate_c3} for ^C, ${podgate_c10} for a newline), which expands to
// the byte inside the double quotes; and the short lines keep within the
// limit. One stty sets the terminal's size and the client's modes where
// they differ from the settings the ready line reported (ttymodes.go). The
// stream's resize message carries the size too, but the kubelet and the
// runtime apply it on a path of their own, unordered with stdin: under
// load a command that reads its size at once (stty size, tput cols) ran
// before it and saw 0 0. The stty orders the size before the command; the
// resize message, arriving after it with the same size, changes nothing
// and sends no SIGWINCH.
//
// Locale: bash (which is /bin/sh on some distributions) decodes multibyte
// characters in read and in its parser, and in a UTF-8 locale an invalid
// lead byte swallows the bytes after it, newline included, which would
// break the framing. The wrapper therefore sets LC_ALL=C while it reads,
// and the spec restores the original LC_ALL as the first command of its
// final line. That line holds the restore, the exports and the exec as one
// list, which the shell parses in full (under C) before running any of it.

// readyPrefix starts the line the wrapper prints once it waits for its spec.
const readyPrefix = "PODGATE-READY "

// goLine is the line a terminal wrapper prints once it has read its spec.
const goLine = "\x1fPODGATE-GO"

// wrapperScript is the program described above. $1 is "tty" or "plain".
// Exit codes of its own: 125 for a malformed spec, 0 when its stdin ends
// before a spec arrives (an unused stream being closed).
//
// The wrapper never prints before it has read the hello, and nothing of its
// own after the ready line (and, on a terminal, the go line): everything
// after that is the command's.
const wrapperScript = `podgate_lcset=${LC_ALL+1}
podgate_lc=${LC_ALL-}
LC_ALL=C
podgate_tty=
if [ "$1" = tty ]; then
podgate_tty=$(stty iutf8 2>/dev/null; stty -g 2>/dev/null)
podgate_ttyname=$(tty 2>/dev/null) || podgate_ttyname=
eval "$(printf "` + controlVars + `")"
fi
podgate_account=$(id -un 2>/dev/null) || podgate_account=
IFS= read -r podgate_hello || exit 0
printf '%s%s %s\n' '` + readyPrefix + `' "$$" "$podgate_tty"
IFS= read -r podgate_n || exit 0
case $podgate_n in ''|*[!0-9]*) exit 125;; esac
podgate_spec=
while [ "$podgate_n" -gt 0 ]; do
IFS= read -r podgate_line || exit 125
podgate_spec="$podgate_spec$podgate_line
"
podgate_n=$((podgate_n - 1))
done
if [ "$1" = tty ]; then printf '\037PODGATE-GO\n'; fi
eval "$podgate_spec"
exit 125
`

// controlVars is the printf format that defines the control characters'
// variables: podgate_c1='\001';podgate_c2='\002';... (printf turns each
// octal escape into its byte).
const controlVars = "podgate_c1='\\001';podgate_c2='\\002';podgate_c3='\\003';podgate_c4='\\004';" +
	"podgate_c5='\\005';podgate_c6='\\006';podgate_c7='\\007';podgate_c8='\\010';" +
	"podgate_c9='\\011';podgate_c10='\\012';podgate_c11='\\013';podgate_c12='\\014';" +
	"podgate_c13='\\015';podgate_c14='\\016';podgate_c15='\\017';podgate_c16='\\020';" +
	"podgate_c17='\\021';podgate_c18='\\022';podgate_c19='\\023';podgate_c20='\\024';" +
	"podgate_c21='\\025';podgate_c22='\\026';podgate_c23='\\027';podgate_c24='\\030';" +
	"podgate_c25='\\031';podgate_c26='\\032';podgate_c27='\\033';podgate_c28='\\034';" +
	"podgate_c29='\\035';podgate_c30='\\036';podgate_c31='\\037';podgate_c127='\\177'"

// wrapperShell is the interpreter the wrapper runs under. Both guest images,
// and every image podgate supports, have a POSIX shell there.
const wrapperShell = "/bin/sh"

// wrapperArgv returns the exec argv that starts the wrapper.
func wrapperArgv(tty bool) []string {
	mode := "plain"
	if tty {
		mode = "tty"
	}
	return []string{wrapperShell, "-c", wrapperScript, "podgate-wrapper", mode}
}

// helloLine is the first thing podgate writes to every wrapper's stdin.
const helloLine = "\n"

// exitSpec is the spec that tells a waiting wrapper to exit without running
// anything; Close sends it so an unused stream leaves no process behind even
// when the runtime does not deliver stdin EOF to a terminal.
const exitSpec = "1\nexit 0\n"

// maxSpecBytes bounds a spec. The wrapper reads it a byte at a time, and no
// legitimate SSH command or environment comes near this size.
const maxSpecBytes = 256 << 10

// maxSpecLine bounds a physical line of the spec, well under a terminal's
// 4095-byte line.
const maxSpecLine = 1024

// ErrInvalidCommand is returned, wrapped with the reason, for a command that
// cannot be passed to the pod faithfully: an empty argv, a NUL byte, an
// invalid environment variable name, or an oversized spec.
var ErrInvalidCommand = errors.New("invalid command")

// encodeSpec renders a command as the framed spec the wrapper reads. pty is
// nil for a plain stream; for a terminal stream, term is the terminal's
// settings as the ready line reported them (nil: the kernel's defaults),
// the spec applies the requested modes that differ, and exports TERM.
func encodeSpec(argv []string, env map[string]string, pty *scheduler.Pty, term *termState) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("%w: empty argv", ErrInvalidCommand)
	}
	w := &specWriter{tty: pty != nil}
	if pty != nil {
		cur := defaultTermState()
		if term != nil {
			cur = *term
		}
		if args := append(sttySize(pty.Size), sttyModes(pty.Modes, cur)...); len(args) > 0 {
			// Best effort: a mode an stty does not know costs the user
			// that mode, never the session.
			w.raw("stty " + strings.Join(args, " ") + " 2>/dev/null")
			w.newline()
		}
	}
	// The final line: one list, parsed before any of it runs (see the
	// locale note above).
	w.raw(`if [ -n "$podgate_lcset" ]; then LC_ALL=$podgate_lc; else unset LC_ALL; fi`)
	if pty != nil && pty.Term != "" {
		if err := checkValue("TERM", pty.Term); err != nil {
			return nil, err
		}
		w.raw("; export TERM=")
		w.word(pty.Term)
	}
	names := make([]string, 0, len(env))
	for name := range env {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !validEnvName(name) {
			return nil, fmt.Errorf("%w: environment variable name %q", ErrInvalidCommand, name)
		}
		if err := checkValue(name, env[name]); err != nil {
			return nil, err
		}
		w.raw("; export " + name + "=")
		w.word(env[name])
	}
	w.raw(loginEnv)
	if pty != nil {
		w.raw(terminalEnv)
	}
	w.raw("; exec")
	for i, arg := range argv {
		if strings.IndexByte(arg, 0) >= 0 {
			return nil, fmt.Errorf("%w: argument %d contains NUL", ErrInvalidCommand, i)
		}
		w.raw(" ")
		w.word(arg)
	}
	w.newline()
	if w.b.Len() > maxSpecBytes {
		return nil, fmt.Errorf("%w: spec is %d bytes, limit %d", ErrInvalidCommand, w.b.Len(), maxSpecBytes)
	}
	return []byte(strconv.Itoa(w.lines) + "\n" + w.b.String()), nil
}

// specWriter builds the spec's lines, splitting none but keeping each within
// maxSpecLine (see Quoting above).
type specWriter struct {
	b     strings.Builder
	tty   bool
	col   int // bytes on the current physical line
	lines int // physical lines written
}

// raw writes podgate's own text, which holds no newline and is split only
// before it.
func (w *specWriter) raw(s string) {
	w.fit(len(s))
	w.b.WriteString(s)
	w.col += len(s)
}

// word writes s as one double-quoted word.
func (w *specWriter) word(s string) {
	w.raw(`"`)
	var unit [16]byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		u := unit[:0]
		switch {
		case w.tty && (c < 0x20 || c == 0x7f):
			// No control byte reaches a terminal's line discipline.
			u = append(u, "${podgate_c"+strconv.Itoa(int(c))+"}"...)
		case c == '\n':
			// A real line end, inside the quotes: the value keeps it.
			w.newline()
			continue
		case c == '$' || c == '`' || c == '"' || c == '\\':
			u = append(u, '\\', c)
		default:
			u = append(u, c)
		}
		w.fit(len(u))
		w.b.Write(u)
		w.col += len(u)
	}
	w.b.WriteByte('"')
	w.col++
}

// fit starts a new physical line, joined to this one by a backslash-newline
// the shell removes, when n more bytes would not fit.
func (w *specWriter) fit(n int) {
	if w.col > 0 && w.col+n > maxSpecLine {
		w.b.WriteString("\\\n")
		w.lines++
		w.col = 0
	}
}

// newline ends the current line.
func (w *specWriter) newline() {
	w.b.WriteByte('\n')
	w.lines++
	w.col = 0
}

// loginEnv and terminalEnv export what the wrapper looked up in the pod
// (see the wrapper's description), after the caller's variables.
const (
	loginEnv    = `; if [ -n "$podgate_account" ]; then export USER="$podgate_account" LOGNAME="$podgate_account"; fi`
	terminalEnv = `; if [ -n "$podgate_ttyname" ]; then export SSH_TTY="$podgate_ttyname"; fi`
)

// checkValue rejects an environment value sh cannot hold.
func checkValue(name, value string) error {
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("%w: value of %s contains NUL", ErrInvalidCommand, name)
	}
	return nil
}

// shellQuote returns s as one single-quoted sh word. Inside single quotes
// nothing is special except the quote itself, which is written as a closing
// quote, a backslash-escaped quote and an opening quote.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// validEnvName reports whether name matches [A-Za-z_][A-Za-z0-9_]*, the names
// sh can export.
func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i, c := range []byte(name) {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// signalNumber maps the SSH signal names podgate delivers (RFC 4254 section
// 6.10) to their Linux numbers, or 0 for a name outside that fixed list.
func signalNumber(name string) int {
	switch name {
	case "HUP":
		return 1
	case "INT":
		return 2
	case "QUIT":
		return 3
	case "ILL":
		return 4
	case "ABRT":
		return 6
	case "FPE":
		return 8
	case "KILL":
		return 9
	case "USR1":
		return 10
	case "SEGV":
		return 11
	case "USR2":
		return 12
	case "PIPE":
		return 13
	case "ALRM":
		return 14
	case "TERM":
		return 15
	}
	return 0
}

// killArgv is the exec argv that delivers signal name to pid with the sh
// kill builtin; name must have passed signalNumber. A process that has
// already exited counts as delivered: the hang-up after a client leaves
// usually finds the command gone (its stdin ended), and reporting that as a
// failure put one warning per closed session in the operator log.
func killArgv(name string, pid int) []string {
	return []string{wrapperShell, "-c", `kill -0 "$2" 2>/dev/null || exit 0; kill -s "$1" "$2"`, "podgate-kill", name, strconv.Itoa(pid)}
}
