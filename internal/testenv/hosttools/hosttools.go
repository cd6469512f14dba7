// Package hosttools is the one list of programs that podgate's tests,
// benchmarks, chaos suite, scripts and local-cluster harness run on the
// host, each with the Debian package that provides it.
//
// The list is tools.tsv beside this file, embedded here. `make deps`
// (hack/deps.sh) installs the packages of the missing tools from it, `make
// test` checks it before anything runs (`hostcheck`), the local-cluster
// harness installs its own part from it, and tests call Require so that a
// missing tool fails with the package to install instead of an error from
// the code under test. A unit test (drift_test.go) scans the repository and
// fails when something runs a tool that is not on the list.
package hosttools

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

//go:embed tools.tsv
var toolsTSV []byte

// Use says who needs a tool: the tests and their scripts, or the local
// cluster harness. The harness's tools are installed only where the local
// cluster runs: on a machine whose tests use another cluster (KUBECONFIG),
// containerd and runc from Debian could clash with the ones already there.
type Use string

const (
	ForTests   Use = "tests"
	ForCluster Use = "cluster"
)

// NotDebian is the package column of a tool that no Debian package
// provides here (the Go toolchain; kubectl, which the harness builds).
// make deps installs nothing for it and Check looks it up on PATH.
const NotDebian = "-"

var (
	// ErrMissing is a listed tool that is not installed.
	ErrMissing = errors.New("missing")
	// ErrUnlisted is a tool that is not on the list: add it to tools.tsv.
	ErrUnlisted = errors.New("not on the host-tool list (internal/testenv/hosttools/tools.tsv)")
)

// Tool is one line of the list.
type Tool struct {
	// Name is how scripts and tests call it, e.g. "ssh" or "sftp-server".
	Name string
	// Path is where its Debian package installs it, as dpkg records it;
	// "" for a NotDebian tool, which is looked up on PATH.
	Path string
	// Package is the Debian package, or NotDebian.
	Package string
	// For says who needs it.
	For []Use
	// UsedBy names what runs it, for people reading the list.
	UsedBy string
}

// Table is the parsed list.
type Table struct {
	tools []Tool
}

// Load parses the embedded list.
func Load() (Table, error) {
	return Parse(toolsTSV)
}

// Parse reads a list in the format of tools.tsv: comment lines start with
// '#'; every other line has five tab-separated fields: tool, path, Debian
// package, uses (comma-separated), used by.
func Parse(data []byte) (Table, error) {
	var tb Table
	seen := map[string]bool{}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		t, err := parseLine(line)
		if err != nil {
			return Table{}, fmt.Errorf("parsing the host-tool list, line %d: %w", i+1, err)
		}
		if seen[t.Name] {
			return Table{}, fmt.Errorf("parsing the host-tool list, line %d: tool %s listed twice", i+1, t.Name)
		}
		seen[t.Name] = true
		tb.tools = append(tb.tools, t)
	}
	if len(tb.tools) == 0 {
		return Table{}, errors.New("parsing the host-tool list: no tools")
	}
	return tb, nil
}

func parseLine(line string) (Tool, error) {
	f := strings.Split(line, "\t")
	if len(f) != 5 {
		return Tool{}, fmt.Errorf("%d tab-separated fields, want 5 (tool, path, package, uses, used by)", len(f))
	}
	t := Tool{Name: f[0], Path: f[1], Package: f[2], UsedBy: f[4]}
	if t.Name == "" || strings.ContainsAny(t.Name, "/ ") {
		return Tool{}, fmt.Errorf("tool name %q: want a command name", t.Name)
	}
	if t.Package == "" {
		return Tool{}, fmt.Errorf("tool %s: no package", t.Name)
	}
	switch {
	case t.Package == NotDebian && t.Path != NotDebian:
		return Tool{}, fmt.Errorf("tool %s: a tool outside Debian has no fixed path, want %q", t.Name, NotDebian)
	case t.Package == NotDebian:
		t.Path = ""
	case !strings.HasPrefix(t.Path, "/"):
		return Tool{}, fmt.Errorf("tool %s: path %q is not absolute", t.Name, t.Path)
	}
	for _, u := range strings.Split(f[3], ",") {
		switch Use(u) {
		case ForTests, ForCluster:
			t.For = append(t.For, Use(u))
		default:
			return Tool{}, fmt.Errorf("tool %s: use %q, want %s or %s", t.Name, u, ForTests, ForCluster)
		}
	}
	return t, nil
}

// Tools returns every listed tool, in list order.
func (tb Table) Tools() []Tool { return slices.Clone(tb.tools) }

// Lookup returns the tool named name, or an error wrapping ErrUnlisted.
func (tb Table) Lookup(name string) (Tool, error) {
	for _, t := range tb.tools {
		if t.Name == name {
			return t, nil
		}
	}
	return Tool{}, fmt.Errorf("host tool %s: %w", name, ErrUnlisted)
}

// ByPath returns the Debian tool installed at path, comparing paths as on
// a merged-/usr system (/bin/sh is /usr/bin/sh).
func (tb Table) ByPath(path string) (Tool, bool) {
	for _, t := range tb.tools {
		if t.Path != "" && mergedUsr(t.Path) == mergedUsr(path) {
			return t, true
		}
	}
	return Tool{}, false
}

// Missing returns the listed tools for any of uses that are not installed.
func (tb Table) Missing(uses ...Use) []Tool {
	var out []Tool
	for _, t := range tb.tools {
		if !slices.ContainsFunc(t.For, func(u Use) bool { return slices.Contains(uses, u) }) {
			continue
		}
		if _, err := t.Find(); err != nil {
			out = append(out, t)
		}
	}
	return out
}

// Check returns nil when every named tool is listed and installed, and
// otherwise an error naming each one that is not, with its package.
func (tb Table) Check(names ...string) error {
	var errs []error
	for _, n := range names {
		t, err := tb.Lookup(n)
		if err == nil {
			_, err = t.Find()
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Find returns the path to run the tool by, or an error wrapping
// ErrMissing that says how to install it.
func (t Tool) Find() (string, error) {
	if t.Package == NotDebian {
		if p, err := exec.LookPath(t.Name); err == nil {
			return p, nil
		}
		return "", fmt.Errorf("host tool %s %w: not on PATH (%s)", t.Name, ErrMissing, t.UsedBy)
	}
	for _, p := range []string{t.Path, mergedUsr(t.Path)} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("host tool %s %w: run `make deps` (Debian package %s)", t.Name, ErrMissing, t.Package)
}

// mergedUsr maps /bin, /sbin and /lib paths to their /usr twins, which are
// the same files on a merged-/usr Debian.
func mergedUsr(p string) string {
	for _, d := range []string{"/bin/", "/sbin/", "/lib/"} {
		if strings.HasPrefix(p, d) {
			return "/usr" + p
		}
	}
	return p
}

// Check checks the named tools against the embedded list; see Table.Check.
func Check(names ...string) error {
	tb, err := Load()
	if err != nil {
		return err
	}
	return tb.Check(names...)
}

// Path returns the path of the named tool from the embedded list, or an
// error saying which package to install.
func Path(name string) (string, error) {
	tb, err := Load()
	if err != nil {
		return "", err
	}
	t, err := tb.Lookup(name)
	if err != nil {
		return "", err
	}
	return t.Find()
}

// Require fails the test unless every named tool is listed and installed,
// naming the Debian package of each missing one. Call it before running a
// host tool, so that a fresh machine reports what to install rather than
// an error from the code under test.
func Require(t testing.TB, names ...string) {
	t.Helper()
	if err := Check(names...); err != nil {
		t.Fatal(err)
	}
}
