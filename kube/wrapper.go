package kube

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/scheduler"
)

// The pod-side wrapper.
//
// Every exec podgate opens runs the same small POSIX sh program (it must work
// with dash, bash and BusyBox ash, and uses only sh builtins plus stty). It
//
//  1. for a terminal, saves the terminal settings (stty -g) and switches to
//     raw, no-echo mode, so the spec that follows is neither echoed nor
//     interpreted by the line discipline (no ^C, no CR/NL mapping);
//  2. waits for a hello line on stdin, then prints the ready line
//     "PODGATE-READY <pid>\n", which tells podgate that the stream is open
//     and which PID the command will have (sh's exec keeps the PID). The
//     hello closes a race in client-go's WebSocket executor, which starts
//     reading the connection before it has registered its streams and drops
//     any output that arrives in between: client-go sends stdin only after
//     every stream exists, so output that follows the hello is never lost;
//  3. reads the spec: a decimal line count N on a line of its own, then N
//     lines of sh that podgate generated, using only the read builtin. read
//     consumes a pipe or terminal one byte at a time, so the user's stdin
//     that podgate splices in right after the spec is never swallowed (this
//     is why the framing is not "head -c N": BusyBox head reads through
//     stdio and over-reads);
//  4. evals the spec, whose last word is exec, so the user's command
//     replaces the shell and its exit status is the command's own.
//
// Before the hello (so, for a prepared stream, before any user arrives)
// the wrapper also looks up what sshd would put in a login's environment
// and podgate cannot know from outside: the name of the account the pod
// runs as (id -un) and, for a terminal, the terminal's device (tty). The
// spec exports them as USER and LOGNAME, and SSH_TTY, after the caller's
// variables, so they always describe the pod as the command sees it; when
// the pod's uid has no name the caller's USER and LOGNAME stand.
//
// The spec quotes every argument and every environment value in single
// quotes, so the user's command is only ever one argv element and arbitrary
// bytes (quotes, newlines, $(...), control characters) stay inert. NUL cannot
// be represented in an argv or environment and is rejected.
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

// wrapperScript is the program described above. $1 is "tty" or "plain".
// Exit codes of its own: 125 for a malformed spec, 126 when the terminal
// cannot be set up, 0 when its stdin ends before a spec arrives (an unused
// stream being closed).
//
// The wrapper never prints before it has read the hello, and nothing of its
// own after the ready line: everything after that line is the command's.
const wrapperScript = `podgate_lcset=${LC_ALL+1}
podgate_lc=${LC_ALL-}
LC_ALL=C
if [ "$1" = tty ]; then
podgate_tty=$(stty -g) && stty raw -echo -iexten || exit 126
podgate_ttyname=$(tty 2>/dev/null) || podgate_ttyname=
fi
podgate_account=$(id -un 2>/dev/null) || podgate_account=
IFS= read -r podgate_hello || exit 0
printf '%s%s\n' '` + readyPrefix + `' "$$"
IFS= read -r podgate_n || exit 0
case $podgate_n in ''|*[!0-9]*) exit 125;; esac
podgate_spec=
while [ "$podgate_n" -gt 0 ]; do
IFS= read -r podgate_line || exit 125
podgate_spec="$podgate_spec$podgate_line
"
podgate_n=$((podgate_n - 1))
done
eval "$podgate_spec"
exit 125
`

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

// ErrInvalidCommand is returned, wrapped with the reason, for a command that
// cannot be passed to the pod faithfully: an empty argv, a NUL byte, an
// invalid environment variable name, or an oversized spec.
var ErrInvalidCommand = errors.New("invalid command")

// encodeSpec renders a command as the framed spec the wrapper reads. pty is
// nil for a plain stream; for a terminal stream the spec restores the saved
// terminal settings, applies the requested modes and size, and exports TERM.
func encodeSpec(argv []string, env map[string]string, pty *scheduler.Pty) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("%w: empty argv", ErrInvalidCommand)
	}
	var b strings.Builder
	if pty != nil {
		// One stty call normally; if an implementation rejects one of the
		// modes (stty applies all or nothing), retry with the size alone so
		// the terminal is at least restored and sized.
		size := fmt.Sprintf("rows %d cols %d", pty.Size.Rows, pty.Size.Cols)
		fmt.Fprintf(&b, "stty \"$podgate_tty\" %s %s 2>/dev/null || stty \"$podgate_tty\" %s 2>/dev/null\n",
			strings.Join(sttyModes(pty.Modes), " "), size, size)
	}
	// The final line: one list, parsed before any of it runs (see the
	// locale note above).
	b.WriteString(`if [ -n "$podgate_lcset" ]; then LC_ALL=$podgate_lc; else unset LC_ALL; fi`)
	if pty != nil && pty.Term != "" {
		if err := checkValue("TERM", pty.Term); err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "; export TERM=%s", shellQuote(pty.Term))
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
		fmt.Fprintf(&b, "; export %s=%s", name, shellQuote(env[name]))
	}
	b.WriteString(loginEnv)
	if pty != nil {
		b.WriteString(terminalEnv)
	}
	b.WriteString("; exec")
	for i, arg := range argv {
		if strings.IndexByte(arg, 0) >= 0 {
			return nil, fmt.Errorf("%w: argument %d contains NUL", ErrInvalidCommand, i)
		}
		b.WriteByte(' ')
		b.WriteString(shellQuote(arg))
	}
	b.WriteByte('\n')
	body := b.String()
	if len(body) > maxSpecBytes {
		return nil, fmt.Errorf("%w: spec is %d bytes, limit %d", ErrInvalidCommand, len(body), maxSpecBytes)
	}
	lines := strings.Count(body, "\n")
	return []byte(strconv.Itoa(lines) + "\n" + body), nil
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

// sttyModes turns RFC 4254 terminal modes into stty arguments, in opcode
// order. Only modes that both GNU coreutils and BusyBox stty accept, and
// that mean something on a Linux pty, are mapped; speeds and character size
// are ignored. Every argument is a fixed word or a quoted control character,
// never client text.
func sttyModes(modes map[uint8]uint32) []string {
	ops := make([]uint8, 0, len(modes))
	for op := range modes {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	var args []string
	for _, op := range ops {
		v := modes[op]
		if name := ttyCharName(op); name != "" {
			args = append(args, name, shellQuote(ttyCharValue(v)))
			continue
		}
		if name := ttyFlagName(op); name != "" {
			if v == 0 {
				name = "-" + name
			}
			args = append(args, name)
		}
	}
	return args
}

// ttyCharName is the stty name of a special-character opcode, or "".
func ttyCharName(op uint8) string {
	switch op {
	case ssh.VINTR:
		return "intr"
	case ssh.VQUIT:
		return "quit"
	case ssh.VERASE:
		return "erase"
	case ssh.VKILL:
		return "kill"
	case ssh.VEOF:
		return "eof"
	case ssh.VEOL:
		return "eol"
	case ssh.VEOL2:
		return "eol2"
	case ssh.VSTART:
		return "start"
	case ssh.VSTOP:
		return "stop"
	case ssh.VSUSP:
		return "susp"
	case ssh.VREPRINT:
		return "rprnt"
	case ssh.VWERASE:
		return "werase"
	case ssh.VLNEXT:
		return "lnext"
	case ssh.VDISCARD:
		return "discard"
	}
	return ""
}

// ttyFlagName is the stty name of a boolean-mode opcode, or "".
func ttyFlagName(op uint8) string {
	switch op {
	case ssh.IGNPAR:
		return "ignpar"
	case ssh.PARMRK:
		return "parmrk"
	case ssh.INPCK:
		return "inpck"
	case ssh.ISTRIP:
		return "istrip"
	case ssh.INLCR:
		return "inlcr"
	case ssh.IGNCR:
		return "igncr"
	case ssh.ICRNL:
		return "icrnl"
	case ssh.IXON:
		return "ixon"
	case ssh.IXANY:
		return "ixany"
	case ssh.IXOFF:
		return "ixoff"
	case ssh.IMAXBEL:
		return "imaxbel"
	case ssh.IUTF8:
		return "iutf8"
	case ssh.ISIG:
		return "isig"
	case ssh.ICANON:
		return "icanon"
	case ssh.ECHO:
		return "echo"
	case ssh.ECHOE:
		return "echoe"
	case ssh.ECHOK:
		return "echok"
	case ssh.ECHONL:
		return "echonl"
	case ssh.NOFLSH:
		return "noflsh"
	case ssh.TOSTOP:
		return "tostop"
	case ssh.IEXTEN:
		return "iexten"
	case ssh.ECHOCTL:
		return "echoctl"
	case ssh.ECHOKE:
		return "echoke"
	case ssh.OPOST:
		return "opost"
	case ssh.ONLCR:
		return "onlcr"
	case ssh.OCRNL:
		return "ocrnl"
	case ssh.ONOCR:
		return "onocr"
	case ssh.ONLRET:
		return "onlret"
	}
	return ""
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
