package kube

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/podgate/podgate/internal/testenv/hosttools"
	"github.com/podgate/podgate/scheduler"
)

// helperEnv makes the test binary act as the command the wrapper execs: it
// reports its argv, the variables named in helperNamesEnv, its stdin and
// its PID as JSON (byte slices, so invalid UTF-8 survives exactly).
const (
	helperEnv      = "PODGATE_KUBE_TEST_HELPER"
	helperNamesEnv = "PODGATE_KUBE_TEST_NAMES"
	// helperNoStdinEnv makes the helper report without reading stdin.
	helperNoStdinEnv = "PODGATE_KUBE_TEST_NO_STDIN"
)

type helperReport struct {
	Args  [][]byte
	Env   map[string][]byte
	Stdin []byte
	PID   int
}

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

func helperMain() int {
	var r helperReport
	for _, a := range os.Args {
		r.Args = append(r.Args, []byte(a))
	}
	r.Env = map[string][]byte{}
	for _, name := range strings.Split(os.Getenv(helperNamesEnv), ",") {
		if v, ok := os.LookupEnv(name); ok {
			r.Env[name] = []byte(v)
		}
	}
	if os.Getenv(helperNoStdinEnv) == "" {
		stdin, err := io.ReadAll(os.Stdin)
		if err != nil {
			return 3
		}
		r.Stdin = stdin
	}
	r.PID = os.Getpid()
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return 4
	}
	return 0
}

// localShells are the POSIX shells on this machine the wrapper must work
// with: dash (/bin/sh on Debian), BusyBox ash and bash. `make deps`
// installs all three; a missing one fails the test, naming its package.
func localShells(t *testing.T) map[string][]string {
	t.Helper()
	hosttools.Require(t, "sh", "busybox", "bash")
	return map[string][]string{
		"sh":      {"/bin/sh"},
		"busybox": {"/bin/busybox", "sh"},
		"bash":    {"/bin/bash"},
	}
}

// runLocally runs the plain wrapper under shell with spec and then extra on
// its stdin (a pipe, as in a pod), and decodes the helper's report. It also
// checks the ready line and that it carries the command's PID.
func runLocally(t *testing.T, shell []string, spec, extra []byte) helperReport {
	t.Helper()
	args := append(append([]string(nil), shell[1:]...), wrapperArgv(false)[1:]...)
	cmd := exec.Command(shell[0], args...)
	cmd.Stdin = io.MultiReader(strings.NewReader(helloLine), bytes.NewReader(spec), bytes.NewReader(extra))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wrapper under %v: %v; stderr %q; stdout %q", shell, err, stderr.String(), out)
	}
	line, rest, ok := bytes.Cut(out, []byte("\n"))
	if !ok || !bytes.HasPrefix(line, []byte(readyPrefix)) {
		t.Fatalf("stdout does not start with the ready line: %q", out)
	}
	var r helperReport
	if err := json.Unmarshal(rest, &r); err != nil {
		t.Fatalf("decoding helper report %q: %v", rest, err)
	}
	pidText, _, _ := strings.Cut(string(line[len(readyPrefix):]), " ")
	if pid, _ := strconv.Atoi(pidText); pid != r.PID {
		t.Errorf("ready line announced pid %d, command ran as %d", pid, r.PID)
	}
	return r
}

// helperCommand returns an argv and env that run the test binary as the
// helper with the given extra arguments and variables.
func helperCommand(t testing.TB, args []string, env map[string]string) ([]string, map[string]string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	full := map[string]string{helperEnv: "1"}
	names := make([]string, 0, len(env))
	for k, v := range env {
		full[k] = v
		names = append(names, k)
	}
	full[helperNamesEnv] = strings.Join(names, ",")
	return append([]string{self}, args...), full
}

// checkRoundTrip encodes args and env, runs them through the wrapper under
// every local shell, and requires the command to see exactly them, and
// exactly the stdin sent after the spec.
func checkRoundTrip(t *testing.T, shells map[string][]string, args []string, env map[string]string, extra []byte) {
	t.Helper()
	argv, fullEnv := helperCommand(t, args, env)
	spec, err := encodeSpec(argv, fullEnv, nil, nil)
	if err != nil {
		t.Fatalf("encodeSpec: %v", err)
	}
	for name, shell := range shells {
		r := runLocally(t, shell, spec, extra)
		if len(r.Args) != len(argv) {
			t.Fatalf("%s: command got %d args, want %d: %q", name, len(r.Args), len(argv), r.Args)
		}
		for i := 1; i < len(argv); i++ {
			if string(r.Args[i]) != argv[i] {
				t.Errorf("%s: arg %d = %q, want %q", name, i, r.Args[i], argv[i])
			}
		}
		for k, v := range env {
			if got, ok := r.Env[k]; !ok || string(got) != v {
				t.Errorf("%s: env %s = %q (set %t), want %q", name, k, got, ok, v)
			}
		}
		if !bytes.Equal(r.Stdin, extra) {
			t.Errorf("%s: stdin after the spec = %q, want %q (the wrapper must not over-read); spec %q", name, r.Stdin, extra, spec)
		}
	}
}

func TestSpecRoundTripNastyValues(t *testing.T) {
	shells := localShells(t)
	nasty := []string{
		"",
		"'; echo pwned #",
		"it's",
		`"double" \back\slash`,
		"$(id) `id` ${HOME} $HOME",
		"line1\nline2\n",
		"\n",
		"trailing newlines\n\n\n",
		"\x03\x04\x1a\x1b[31m\x7f",
		"\r\n\r",
		" leading and trailing spaces ",
		"*?[a-z] ~ & | ; < > ( ) { }",
		"\xff\xfe invalid utf-8 \x80",
		"PODGATE-READY 1\n",
		"lead bytes before newlines \xc3\n\xe2\n\xf2\n\xf4",
		"1\nexit 0\n",
		strings.Repeat("x", 10000),
	}
	env := map[string]string{}
	for i, v := range nasty {
		env["NASTY_"+strconv.Itoa(i)] = v
	}
	checkRoundTrip(t, shells, nasty, env, []byte("stdin after spec\nwith 'quotes' and \x03\x00 bytes\n"))
}

func TestSpecRoundTripRandom(t *testing.T) {
	shells := localShells(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 40 {
		args := make([]string, rng.IntN(5))
		for j := range args {
			args[j] = randomValue(rng)
		}
		env := map[string]string{"RANDOM_" + strconv.Itoa(i): randomValue(rng)}
		extra := []byte(randomValue(rng))
		checkRoundTrip(t, shells, args, env, extra)
	}
}

// randomValue returns a string of non-NUL bytes biased towards the ones
// sh and terminals treat specially.
func randomValue(rng *rand.Rand) string {
	const special = "'\"\\$`\n\r\x03\x04 \t*?;#!&|<>(){}[]~"
	b := make([]byte, rng.IntN(40))
	for i := range b {
		if rng.IntN(2) == 0 {
			b[i] = special[rng.IntN(len(special))]
		} else {
			b[i] = byte(1 + rng.IntN(255))
		}
	}
	return string(b)
}

// FuzzSpecRoundTrip checks the quoting property for arbitrary arguments and
// values under the local /bin/sh. Plain `go test` runs the seeds.
func FuzzSpecRoundTrip(f *testing.F) {
	hosttools.Require(f, "sh")
	f.Add("'; echo pwned #", "$(id)", []byte("in"))
	f.Add("a\nb", "\x03", []byte{})
	f.Add(`'\''`, "", []byte("\n"))
	f.Fuzz(func(t *testing.T, arg, value string, extra []byte) {
		if strings.IndexByte(arg, 0) >= 0 || strings.IndexByte(value, 0) >= 0 {
			if _, err := encodeSpec([]string{"x", arg}, map[string]string{"V": value}, nil, nil); !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("NUL accepted: err = %v", err)
			}
			return
		}
		checkRoundTrip(t, map[string][]string{"sh": {"/bin/sh"}}, []string{arg}, map[string]string{"FUZZ_VALUE": value}, extra)
	})
}

// TestWrapperRestoresLocale checks that the LC_ALL=C the wrapper reads
// under does not reach the command: an inherited LC_ALL comes back, an
// absent one stays absent, and one the session sets wins.
func TestWrapperRestoresLocale(t *testing.T) {
	for name, shell := range localShells(t) {
		for _, tc := range []struct {
			inherited, session string // "" means unset
			want               string
		}{
			{"", "", ""},
			{"C.UTF-8", "", "C.UTF-8"},
			{"C.UTF-8", "POSIX", "POSIX"},
		} {
			env := map[string]string{}
			if tc.session != "" {
				env["LC_ALL"] = tc.session
			}
			argv, fullEnv := helperCommand(t, nil, env)
			fullEnv[helperNamesEnv] = "LC_ALL"
			spec, err := encodeSpec(argv, fullEnv, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			args := append(append([]string(nil), shell[1:]...), wrapperArgv(false)[1:]...)
			cmd := exec.Command(shell[0], args...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			if tc.inherited != "" {
				cmd.Env = append(cmd.Env, "LC_ALL="+tc.inherited)
			}
			cmd.Stdin = io.MultiReader(strings.NewReader(helloLine), bytes.NewReader(spec))
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			_, report, _ := bytes.Cut(out, []byte("\n"))
			var r helperReport
			if err := json.Unmarshal(report, &r); err != nil {
				t.Fatalf("%s: decoding %q: %v", name, report, err)
			}
			got, set := r.Env["LC_ALL"]
			if string(got) != tc.want || set != (tc.want != "") {
				t.Errorf("%s, inherited %q, session %q: command saw LC_ALL=%q (set %t), want %q",
					name, tc.inherited, tc.session, got, set, tc.want)
			}
		}
	}
}

// TestWrapperExportsAccount checks that USER and LOGNAME name the account
// the command runs as (id -un), whatever the caller passed, as sshd sets
// them for a login.
func TestWrapperExportsAccount(t *testing.T) {
	account, err := exec.Command("id", "-un").Output()
	if err != nil {
		t.Skipf("id -un: %v", err)
	}
	want := strings.TrimSpace(string(account))
	for name, shell := range localShells(t) {
		r := func() helperReport {
			argv, env := helperCommand(t, nil, map[string]string{"USER": "podgate-user", "LOGNAME": "podgate-user"})
			spec, err := encodeSpec(argv, env, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			return runLocally(t, shell, spec, nil)
		}()
		if string(r.Env["USER"]) != want || string(r.Env["LOGNAME"]) != want {
			t.Errorf("%s: USER=%q LOGNAME=%q, want both %q", name, r.Env["USER"], r.Env["LOGNAME"], want)
		}
	}
}

func TestWrapperExitsWhenStdinEndsOrOnExitSpec(t *testing.T) {
	for name, shell := range localShells(t) {
		for _, tc := range []struct{ input, output string }{
			{"", ""}, // no hello: silent, as when the stream fails early
			{helloLine, readyPrefix},
			{helloLine + exitSpec, readyPrefix},
		} {
			args := append(append([]string(nil), shell[1:]...), wrapperArgv(false)[1:]...)
			cmd := exec.Command(shell[0], args...)
			cmd.Stdin = strings.NewReader(tc.input)
			out, err := cmd.Output()
			if err != nil {
				t.Errorf("%s with stdin %q: %v", name, tc.input, err)
			}
			if line, _, _ := strings.Cut(string(out), "\n"); !strings.HasPrefix(line, tc.output) ||
				(tc.output == "") != (len(out) == 0) || strings.Count(string(out), "\n") > 1 {
				t.Errorf("%s with stdin %q: output %q, want at most the ready line", name, tc.input, out)
			}
		}
	}
}

func TestWrapperRejectsMalformedSpec(t *testing.T) {
	for name, shell := range localShells(t) {
		for _, spec := range []string{"x\n", "2\nexec true\n", "-1\n"} {
			args := append(append([]string(nil), shell[1:]...), wrapperArgv(false)[1:]...)
			cmd := exec.Command(shell[0], args...)
			cmd.Stdin = strings.NewReader(helloLine + spec)
			err := cmd.Run()
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) || exitErr.ExitCode() != 125 {
				t.Errorf("%s with spec %q: err = %v, want exit status 125", name, spec, err)
			}
		}
	}
}

func TestEncodeSpecRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		argv []string
		env  map[string]string
		pty  *scheduler.Pty
	}{
		{"empty argv", nil, nil, nil},
		{"NUL in argument", []string{"echo", "a\x00b"}, nil, nil},
		{"NUL in value", []string{"true"}, map[string]string{"A": "\x00"}, nil},
		{"NUL in TERM", []string{"true"}, nil, &scheduler.Pty{Term: "x\x00"}},
		{"name with dash", []string{"true"}, map[string]string{"A-B": "x"}, nil},
		{"name starting with digit", []string{"true"}, map[string]string{"1A": "x"}, nil},
		{"empty name", []string{"true"}, map[string]string{"": "x"}, nil},
		{"name with injection", []string{"true"}, map[string]string{"A=1;id;B": "x"}, nil},
		{"oversized", []string{"echo", strings.Repeat("x", maxSpecBytes)}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := encodeSpec(tc.argv, tc.env, tc.pty, nil); !errors.Is(err, ErrInvalidCommand) {
				t.Errorf("encodeSpec = %v, want ErrInvalidCommand", err)
			}
		})
	}
}

// restoreLocale is the first command of every spec's final line.
const restoreLocale = `if [ -n "$podgate_lcset" ]; then LC_ALL=$podgate_lc; else unset LC_ALL; fi`

func TestEncodeSpecFraming(t *testing.T) {
	spec, err := encodeSpec([]string{"printf", "%s", "a\nb"}, map[string]string{"B": "2", "A": "$x"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "2\n" + restoreLocale + `; export A="\$x"; export B="2"` + loginEnv + `; exec "printf" "%s" "a` + "\n" + `b"` + "\n"
	if string(spec) != want {
		t.Errorf("spec = %q, want %q", spec, want)
	}
}

// TestEncodeSpecSplitsLongLines: no physical line of a spec exceeds
// maxSpecLine, whatever the length of a value or the number of words, and
// the line count covers the splits.
func TestEncodeSpecSplitsLongLines(t *testing.T) {
	args := []string{strings.Repeat("x", 5000), strings.Repeat("$", 3000)}
	for range 300 {
		args = append(args, "word")
	}
	spec, err := encodeSpec(args, nil, &scheduler.Pty{Term: "xterm"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := strings.Cut(string(spec), "\n")
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if n, _ := strconv.Atoi(head); n != len(lines) {
		t.Errorf("spec says %s lines, has %d", head, len(lines))
	}
	for i, l := range lines {
		if len(l) > maxSpecLine+2 {
			t.Errorf("line %d is %d bytes", i, len(l))
		}
	}
}

// TestEncodeSpecTTY: a terminal spec applies only the modes that differ
// from the terminal's reported settings (here the kernel's defaults plus
// iutf8, as a prepared terminal reports them), and writes control bytes
// as the wrapper's variables; a client whose modes match the terminal's
// costs no stty.
func TestEncodeSpecTTY(t *testing.T) {
	prepared := defaultTermState()
	prepared.iflag |= 0x4000 // iutf8
	pty := &scheduler.Pty{
		Term: "xterm-256color",
		Size: scheduler.WindowSize{Cols: 132, Rows: 43},
		Modes: map[uint8]uint32{
			ssh.VINTR: 3, ssh.VEOF: 4, ssh.VERASE: 127, ssh.VKILL: 255, ssh.VSUSP: 'z',
			ssh.ECHO: 0, ssh.ICANON: 1, ssh.ISIG: 1, ssh.ICRNL: 1, ssh.OPOST: 1, ssh.ONLCR: 0, ssh.IUTF8: 1,
			ssh.TTY_OP_ISPEED: 38400, ssh.CS8: 1,
		},
	}
	spec, err := encodeSpec([]string{"bash", "a\x03b"}, nil, pty, &prepared)
	if err != nil {
		t.Fatal(err)
	}
	want := "2\n" +
		`stty rows 43 cols 132 kill 'undef' susp 'z' -echo -onlcr 2>/dev/null` + "\n" +
		restoreLocale + `; export TERM="xterm-256color"` + loginEnv + terminalEnv + `; exec "bash" "a${podgate_c3}b"` + "\n"
	if string(spec) != want {
		t.Errorf("spec =\n%q\nwant\n%q", spec, want)
	}
	typical := &scheduler.Pty{Term: "xterm", Modes: map[uint8]uint32{
		ssh.VINTR: 3, ssh.VQUIT: 28, ssh.VERASE: 127, ssh.VKILL: 21, ssh.VEOF: 4, ssh.VEOL: 255, ssh.VEOL2: 255,
		ssh.VSTART: 17, ssh.VSTOP: 19, ssh.VSUSP: 26, ssh.VREPRINT: 18, ssh.VWERASE: 23, ssh.VLNEXT: 22, ssh.VDISCARD: 15,
		ssh.IGNPAR: 0, ssh.ICRNL: 1, ssh.IXON: 1, ssh.IXANY: 0, ssh.IMAXBEL: 0, ssh.IUTF8: 1,
		ssh.ISIG: 1, ssh.ICANON: 1, ssh.ECHO: 1, ssh.ECHOE: 1, ssh.ECHOK: 1, ssh.ECHONL: 0, ssh.NOFLSH: 0,
		ssh.TOSTOP: 0, ssh.IEXTEN: 1, ssh.ECHOCTL: 1, ssh.ECHOKE: 1, ssh.OPOST: 1, ssh.ONLCR: 1,
	}}
	spec, err = encodeSpec([]string{"bash"}, nil, typical, &prepared)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(spec), "stty") {
		t.Errorf("a typical Linux client's modes needed an stty: %q", spec)
	}
}

func TestParseTermState(t *testing.T) {
	ts, ok := parseTermState("4500:5:bf:8a3b:3:1c:7f:15:4:0:1:0:11:13:1a:0:12:f:17:16:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0:0\r")
	if !ok || ts.iflag != 0x4500 || ts.lflag != 0x8a3b || ts.cc[ccVERASE] != 0x7f {
		t.Errorf("parseTermState = %+v, %t", ts, ok)
	}
	for _, bad := range []string{"", "x", "1:2:3", "500:5:bf:8a3b:zz"} {
		if _, ok := parseTermState(bad); ok {
			t.Errorf("parseTermState(%q) accepted", bad)
		}
	}
}

func TestTTYCharValue(t *testing.T) {
	for v, want := range map[uint32]string{
		0: "undef", 255: "undef", 1: "^A", 3: "^C", 28: `^\`, 31: "^_", 127: "^?",
		'a': "a", '\'': "'", '0': "0", 200: "200",
	} {
		if got := ttyCharValue(v); got != want {
			t.Errorf("ttyCharValue(%d) = %q, want %q", v, got, want)
		}
	}
}

func TestSignalNames(t *testing.T) {
	for _, name := range []string{"HUP", "INT", "QUIT", "ILL", "ABRT", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE", "ALRM", "TERM"} {
		n := signalNumber(name)
		if n == 0 || signalName(n) != name {
			t.Errorf("signal %s: number %d maps back to %q", name, n, signalName(n))
		}
	}
	for _, bad := range []string{"", "SIGINT", "int", "STOP", "INT; reboot"} {
		if signalNumber(bad) != 0 {
			t.Errorf("signalNumber(%q) accepted", bad)
		}
	}
}

func TestValidEnvName(t *testing.T) {
	for name, want := range map[string]bool{
		"A": true, "_": true, "a_1": true, "LC_ALL": true,
		"": false, "1A": false, "A-B": false, "A B": false, "Ä": false, "A=B": false,
	} {
		if got := validEnvName(name); got != want {
			t.Errorf("validEnvName(%q) = %t, want %t", name, got, want)
		}
	}
}

func TestShellQuoteSingle(t *testing.T) {
	if got, want := shellQuote("it's $(id)"), `'it'\''s $(id)'`; got != want {
		t.Errorf("shellQuote = %s, want %s", got, want)
	}
}
