package hosttools

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// run is one place where the repository runs a host tool: the tool's name
// or absolute path, and file:line.
type run struct {
	tool, where string
}

// TestListCoversEveryToolRun is the drift guard: it scans the repository
// for the host tools its tests, benchmarks, chaos suite, test environment
// and scripts run, and fails naming each one that is not on the list, so a
// tool can no longer be added to a test without `make deps` installing it.
func TestListCoversEveryToolRun(t *testing.T) {
	tb, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	runs, err := scanRepo(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) < 50 {
		t.Fatalf("the scan found only %d tool runs: it no longer sees what the repository runs", len(runs))
	}
	for _, r := range unlisted(tb, runs) {
		t.Errorf("%s runs %s, which is not on the host-tool list: add it with its Debian package to internal/testenv/hosttools/tools.tsv", r.where, r.tool)
	}
}

// TestDriftGuardCatchesNewTools runs the scan on a small tree holding each
// way of running a tool the guard must see, all of them unlisted.
func TestDriftGuardCatchesNewTools(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"pkg/a_test.go": `package pkg
import ("os/exec"; "testing")
func TestA(t *testing.T) {
	exec.Command("socat", "-").Run()
	exec.CommandContext(t.Context(), "/usr/bin/nc").Run()
	exec.LookPath("jq")
	argv := []string{"/usr/lib/frob/frobd", "-x"}
	exec.Command(argv[0], argv[1:]...).Run()
	runTool("strace")
}
func runTool(name string, args ...string) error { return exec.Command(name, args...).Run() }
`,
		"pkg/b_test.go": `package pkg
import ex "os/exec"
func b() { ex.Command("nmap").Run() }
`,
		"hack/x.sh": "#!/bin/bash\nset -e\nf() { true; }\nf\nout=$(tcpdump -c 1 | wc -l)\nflock -s /tmp/l curl http://x\ncommand -v yq >/dev/null\n./hack/other.sh\n\"$VAR\" arg\n",
		"Makefile":  "X := 1\n\nt:\n\t@$(GO) test ./... && rsync a b\n",
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tb, err := Parse([]byte("sh\t/bin/sh\tdash\ttests\tx\nwc\t/usr/bin/wc\tcoreutils\ttests\tx\nflock\t/usr/bin/flock\tutil-linux\ttests\tx\ntrue\t/bin/true\tcoreutils\ttests\tx\n"))
	if err != nil {
		t.Fatal(err)
	}
	runs, err := scanRepo(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range unlisted(tb, runs) {
		got = append(got, r.tool)
	}
	slices.Sort(got)
	want := []string{"/usr/bin/nc", "/usr/lib/frob/frobd", "curl", "jq", "nmap", "rsync", "socat", "strace", "tcpdump", "yq"}
	if !slices.Equal(got, want) {
		t.Errorf("unlisted tools found = %q, want %q", got, want)
	}
}

// unlisted returns the runs of tools that are not on the list.
func unlisted(tb Table, runs []run) []run {
	var out []run
	for _, r := range runs {
		var listed bool
		if strings.HasPrefix(r.tool, "/") {
			_, listed = tb.ByPath(r.tool)
		} else {
			_, err := tb.Lookup(r.tool)
			listed = err == nil
		}
		if !listed {
			out = append(out, r)
		}
	}
	return out
}

// repoRoot is the directory holding the module's go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if b, _ := os.ReadFile(filepath.Join(dir, "go.mod")); strings.HasPrefix(string(b), "module github.com/podgate/podgate\n") {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("the podgate module's go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// hostSideGo reports whether a Go file runs on the host rather than being
// product code: every test, and everything under the benchmarks, the chaos
// suite, the test environment and the local-cluster command.
func hostSideGo(rel string) bool {
	if strings.HasSuffix(rel, "_test.go") {
		return true
	}
	for _, dir := range []string{"bench/", "chaos/", "internal/testenv/", "cmd/localcluster/"} {
		if strings.HasPrefix(rel, dir) {
			return true
		}
	}
	return false
}

// scanRepo finds the tool runs in every host-side Go file, shell script and
// the Makefile's recipes under root.
func scanRepo(root string) ([]run, error) {
	goFiles := map[string][]string{} // by directory: wrappers are per package
	var runs []run
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(rel, ".go") && hostSideGo(filepath.ToSlash(rel)):
			goFiles[filepath.Dir(p)] = append(goFiles[filepath.Dir(p)], p)
		case strings.HasSuffix(rel, ".sh") || rel == filepath.Join(".ci", "run"):
			r, err := scanShellFile(p, rel)
			if err != nil {
				return err
			}
			runs = append(runs, r...)
		case rel == "Makefile":
			r, err := scanMakefile(p, rel)
			if err != nil {
				return err
			}
			runs = append(runs, r...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, files := range goFiles {
		r, err := scanGoPackage(root, files)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r...)
	}
	return runs, nil
}

// goFile is one parsed file and the names it imports os/exec and hosttools
// under.
type goFile struct {
	fset      *token.FileSet
	f         *ast.File
	execName  string // "" when os/exec is not imported
	toolsName string // "" when hosttools is not imported
}

// scanGoPackage finds the tool runs in one directory's files:
//   - the name given to exec.Command, exec.CommandContext and exec.LookPath,
//     and to hosttools.Check, Path and Require, when it is a constant string;
//   - the same for calls of the package's own wrappers, functions that pass
//     one of their string parameters to exec as the program name;
//   - every absolute path of a program (/bin, /sbin, /usr/bin, /usr/sbin,
//     /usr/lib/...) written as a string in a file that imports os/exec, which
//     catches argv slices run as exec.Command(argv[0], argv[1:]...).
func scanGoPackage(root string, paths []string) ([]run, error) {
	var files []goFile
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(root, p)
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, rel, src, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		gf := goFile{fset: fset, f: f}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			name := filepath.Base(path)
			if imp.Name != nil {
				name = imp.Name.Name
			}
			switch path {
			case "os/exec":
				gf.execName = name
			case "github.com/podgate/podgate/internal/testenv/hosttools":
				gf.toolsName = name
			}
		}
		files = append(files, gf)
	}
	wrappers := map[string]int{}
	for _, gf := range files {
		findWrappers(gf, wrappers)
	}
	var runs []run
	for _, gf := range files {
		runs = append(runs, goRuns(gf, wrappers)...)
	}
	return runs, nil
}

// execNameArg is the index of the program-name argument of an os/exec
// function, or -1.
func execNameArg(fn string) int {
	switch fn {
	case "Command", "LookPath":
		return 0
	case "CommandContext":
		return 1
	}
	return -1
}

// toolArgs returns the arguments of call that name a program: the name
// given to exec.Command, exec.CommandContext or exec.LookPath, or the tools
// given to hosttools.Check, Path or Require.
func toolArgs(gf goFile, call *ast.CallExpr) []ast.Expr {
	if idx := execNameArg(calledPkgFunc(call, gf.execName)); idx >= 0 && idx < len(call.Args) {
		return call.Args[idx : idx+1]
	}
	switch calledPkgFunc(call, gf.toolsName) {
	case "Require":
		return call.Args[min(1, len(call.Args)):]
	case "Check", "Path":
		return call.Args
	}
	return nil
}

// calledPkgFunc returns the function name of a call pkg.Fn(...) with pkg the
// given import name, or "".
func calledPkgFunc(call *ast.CallExpr, pkg string) string {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || pkg == "" {
		return ""
	}
	if id, ok := sel.X.(*ast.Ident); ok && id.Name == pkg {
		return sel.Sel.Name
	}
	return ""
}

// findWrappers records the functions and methods of gf that pass one of
// their parameters to os/exec as the program name, with that parameter's
// index.
func findWrappers(gf goFile, wrappers map[string]int) {
	if gf.execName == "" && gf.toolsName == "" {
		return
	}
	for _, decl := range gf.f.Decls {
		fd, ok := decl.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		params := map[string]int{}
		i := 0
		for _, field := range fd.Type.Params.List {
			for _, n := range field.Names {
				params[n.Name] = i
				i++
			}
			if len(field.Names) == 0 {
				i++
			}
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			for _, a := range toolArgs(gf, call) {
				if id, ok := a.(*ast.Ident); ok {
					if p, ok := params[id.Name]; ok {
						wrappers[fd.Name.Name] = p
					}
				}
			}
			return true
		})
	}
}

// programPath matches the absolute path of a program.
var programPath = regexp.MustCompile(`^/(usr/)?(local/)?(s?bin|lib|libexec)/[A-Za-z0-9._/+-]*[A-Za-z0-9._+-]$`)

// goRuns lists the tool runs of one file; see scanGoPackage.
func goRuns(gf goFile, wrappers map[string]int) []run {
	var runs []run
	add := func(e ast.Expr) {
		if s, ok := constString(e); ok && s != "" && (!strings.Contains(s, "/") || strings.HasPrefix(s, "/")) {
			runs = append(runs, run{s, gf.fset.Position(e.Pos()).String()})
		}
	}
	ast.Inspect(gf.f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			for _, a := range toolArgs(gf, n) {
				add(a)
			}
			if idx, ok := wrappers[calledName(n)]; ok && idx < len(n.Args) {
				add(n.Args[idx])
			}
		case *ast.BasicLit:
			if s, ok := constString(n); ok && gf.execName != "" && programPath.MatchString(s) {
				runs = append(runs, run{s, gf.fset.Position(n.Pos()).String()})
			}
		}
		return true
	})
	return dedupe(runs)
}

// calledName is the name of a called function or method, f(...) or x.f(...).
func calledName(call *ast.CallExpr) string {
	switch f := call.Fun.(type) {
	case *ast.Ident:
		return f.Name
	case *ast.SelectorExpr:
		return f.Sel.Name
	}
	return ""
}

// constString evaluates a string literal or a concatenation of them.
func constString(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		a, ok1 := constString(e.X)
		b, ok2 := constString(e.Y)
		return a + b, ok1 && ok2
	case *ast.ParenExpr:
		return constString(e.X)
	}
	return "", false
}

// dedupe drops a run seen twice at one place (a literal that is both a
// call's argument and a program path).
func dedupe(runs []run) []run {
	seen := map[run]bool{}
	var out []run
	for _, r := range runs {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}
