package hosttools

import (
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestListLoads checks the embedded list: it parses, and it holds the
// tools issue 18 was about with their packages.
func TestListLoads(t *testing.T) {
	tb, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	for name, pkg := range map[string]string{
		"sftp-server": "openssh-sftp-server", "ssh": "openssh-client", "tmux": "tmux",
		"pgrep": "procps", "containerd": "containerd", "go": NotDebian,
	} {
		tool, err := tb.Lookup(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if tool.Package != pkg {
			t.Errorf("%s: package %q, want %q", name, tool.Package, pkg)
		}
	}
}

// TestInstalledToolsComeFromTheirPackage asks dpkg which package owns each
// listed tool found on this machine, so that a wrong package name, which
// `make deps` would install to no effect, fails here.
func TestInstalledToolsComeFromTheirPackage(t *testing.T) {
	tb, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	Require(t, "dpkg")
	dpkg, _ := Path("dpkg")
	// dpkg records /bin/cp, not /usr/bin/cp, and nothing for an
	// alternatives symlink such as /usr/sbin/iptables: ask for every
	// spelling and for the file a symlink leads to, in one call.
	spellings := map[string][]string{}
	var all []string
	for _, tool := range tb.Tools() {
		if tool.Package == NotDebian {
			continue
		}
		p, err := tool.Find()
		if err != nil {
			t.Logf("%s is not installed here: its package is not checked", tool.Name)
			continue
		}
		s := []string{tool.Path, mergedUsr(tool.Path), strings.TrimPrefix(tool.Path, "/usr")}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			s = append(s, real, strings.TrimPrefix(real, "/usr"))
		}
		spellings[tool.Name] = s
		all = append(all, s...)
	}
	// dpkg -S exits 1 when any spelling is unknown, and still prints the
	// others.
	out, _ := exec.Command(dpkg, append([]string{"-S"}, all...)...).Output()
	owners := dpkgOwners(string(out))
	for _, tool := range tb.Tools() {
		var got []string
		for _, p := range spellings[tool.Name] {
			got = append(got, owners[p]...)
		}
		switch {
		case spellings[tool.Name] == nil:
		case len(got) == 0:
			t.Errorf("%s: dpkg -S knows no package for %s", tool.Name, tool.Path)
		case !slices.Contains(got, tool.Package):
			t.Errorf("%s at %s belongs to %v, the list says %s", tool.Name, tool.Path, got, tool.Package)
		}
	}
	t.Logf("%d installed tools checked against dpkg", len(spellings))
}

// dpkgOwners reads dpkg -S output into the packages owning each file. A
// diversion ("diversion by dash from: /bin/sh") counts for the diverting
// package.
func dpkgOwners(out string) map[string][]string {
	owners := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		pkgs, file, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		if by, ok := strings.CutPrefix(pkgs, "diversion by "); ok {
			pkgs, _, _ = strings.Cut(by, " ")
		}
		for _, pkg := range strings.Split(pkgs, ", ") {
			pkg, _, _ = strings.Cut(pkg, ":") // an architecture qualifier
			owners[file] = append(owners[file], pkg)
		}
	}
	return owners
}

// TestCheckNamesThePackage is what a test sees on a machine without a
// tool: the package to install, and ErrUnlisted for a tool off the list.
func TestCheckNamesThePackage(t *testing.T) {
	tb, err := Parse([]byte("# a comment\nfrob\t/nonexistent/frob\tfrob-tools\ttests\tx\n" +
		"sh\t/bin/sh\tdash\ttests\tx\ngotool\t-\t-\tcluster\tthe Go toolchain\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Check("sh"); err != nil {
		t.Errorf("sh: %v", err)
	}
	err = tb.Check("sh", "frob")
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "host tool frob missing: run `make deps` (Debian package frob-tools)") {
		t.Errorf("a missing tool: %v", err)
	}
	if err := tb.Check("socat"); !errors.Is(err, ErrUnlisted) {
		t.Errorf("an unlisted tool: %v, want ErrUnlisted", err)
	}
	if err := tb.Check("gotool"); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "not on PATH (the Go toolchain)") {
		t.Errorf("a missing tool outside Debian: %v", err)
	}
	var names []string
	for _, m := range tb.Missing(ForTests) {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"frob"}) {
		t.Errorf("Missing(tests) = %v, want [frob]", names)
	}
	if m := tb.Missing(ForCluster); len(m) != 1 || m[0].Name != "gotool" {
		t.Errorf("Missing(cluster) = %v, want gotool", m)
	}
}

// TestParseRejectsBadLines covers the mistakes an edit of tools.tsv makes.
func TestParseRejectsBadLines(t *testing.T) {
	for _, bad := range []string{
		"ssh\t/usr/bin/ssh\topenssh-client\ttests",    // 4 fields
		"ssh\tusr/bin/ssh\topenssh-client\ttests\tx",  // relative path
		"ssh\t/usr/bin/ssh\t\ttests\tx",               // no package
		"ssh\t/usr/bin/ssh\topenssh-client\tcheck\tx", // unknown use
		"go\t/usr/local/go/bin/go\t-\ttests\tx",       // a path outside Debian
		"s h\t/usr/bin/ssh\topenssh-client\ttests\tx", // a space in the name
		"ssh\t/a\tp\ttests\tx\nssh\t/b\tq\ttests\tx",  // twice
		"", // empty
		"ssh /usr/bin/ssh openssh-client tests the client, spaced", // spaces, not tabs
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}
