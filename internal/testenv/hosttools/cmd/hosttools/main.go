// Command hosttools reads the host-tool list (internal/testenv/hosttools)
// for the Makefile and hack/deps.sh, so that the scripts and the tests use
// the one list:
//
//	hosttools [-for tests,cluster] missing   the Debian packages of the missing tools, one a line
//	hosttools [-for tests,cluster] check     exit 1 naming each missing tool and its package
//	hosttools list                           the list as a Markdown table
//
// Tools outside Debian (the Go toolchain, the kubectl the harness builds)
// are left to their own setup: missing and check pass over them.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/podgate/podgate/internal/testenv/hosttools"
)

func main() {
	uses := flag.String("for", "tests,cluster", "comma-separated uses to cover: tests, cluster")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: hosttools [-for tests,cluster] missing|check|list")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	code, err := run(os.Stdout, flag.Arg(0), *uses)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hosttools:", err)
	}
	os.Exit(code)
}

// run carries out one command and returns the exit status.
func run(w io.Writer, cmd, usesFlag string) (int, error) {
	tb, err := hosttools.Load()
	if err != nil {
		return 2, err
	}
	var uses []hosttools.Use
	for _, u := range strings.Split(usesFlag, ",") {
		if u := hosttools.Use(u); u != hosttools.ForTests && u != hosttools.ForCluster {
			return 2, fmt.Errorf("-for %q: want %s, %s or both", usesFlag, hosttools.ForTests, hosttools.ForCluster)
		}
		uses = append(uses, hosttools.Use(u))
	}
	var missing []hosttools.Tool
	for _, t := range tb.Missing(uses...) {
		if t.Package != hosttools.NotDebian {
			missing = append(missing, t)
		}
	}
	switch cmd {
	case "missing":
		var pkgs []string
		for _, t := range missing {
			pkgs = append(pkgs, t.Package)
		}
		slices.Sort(pkgs)
		for _, p := range slices.Compact(pkgs) {
			fmt.Fprintln(w, p)
		}
		return 0, nil
	case "check":
		for _, t := range missing {
			_, err := t.Find()
			fmt.Fprintln(w, err)
		}
		if len(missing) > 0 {
			return 1, fmt.Errorf("%d host tools missing: run `make deps` (as root)", len(missing))
		}
		return 0, nil
	case "list":
		fmt.Fprintln(w, "| tool | Debian package | path | for | used by |")
		fmt.Fprintln(w, "|---|---|---|---|---|")
		for _, t := range tb.Tools() {
			path := t.Path
			if path == "" {
				path = "PATH"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", t.Name, t.Package, path, joinUses(t.For), t.UsedBy)
		}
		return 0, nil
	}
	return 2, fmt.Errorf("unknown command %q: want missing, check or list", cmd)
}

func joinUses(us []hosttools.Use) string {
	s := make([]string, len(us))
	for i, u := range us {
		s[i] = string(u)
	}
	return strings.Join(s, ", ")
}
