package scheduler

import (
	"slices"
	"testing"
)

// FuzzExecArgv checks that whatever an exec request holds (quotes, $(...),
// ;, |, newlines, any bytes), the argv sent to the pod is the profile's exec
// wrapper followed by the command as exactly one element: podgate splits
// and interprets nothing, the wrapper in the pod does.
func FuzzExecArgv(f *testing.F) {
	for _, s := range []string{
		`echo $((1+1)); touch /tmp/x; echo "a b"`,
		"echo `id` $(id) | tee /tmp/y && rm -rf / ; exit 3",
		"a\nb\r\n'\"\\",
		"",
		"--help",
		"\x00\xff",
	} {
		f.Add(s)
	}
	pol := policy("default")
	f.Fuzz(func(t *testing.T, cmd string) {
		got, err := argv(pol, Process{Kind: KindExec, Command: cmd})
		if err != nil {
			t.Fatalf("argv(%q): %v", cmd, err)
		}
		want := append(slices.Clone(pol.ExecWrapper), cmd)
		if !slices.Equal(got, want) {
			t.Fatalf("argv(%q) = %q, want %q", cmd, got, want)
		}
	})
}
