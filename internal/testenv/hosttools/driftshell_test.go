package hosttools

import (
	"bufio"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

// scanShellFile finds the programs a bash script runs.
func scanShellFile(path, rel string) ([]run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return scanShell(f, rel, func(l uint) uint { return l })
}

// scanMakefile finds the programs the Makefile's recipes run. Each recipe
// line is shell once make has expanded it; a make reference such as $(GO)
// becomes a variable, whose value the scan does not know.
func scanMakefile(path, rel string) ([]run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var script strings.Builder
	var lines []uint // Makefile line of each script line
	sc := bufio.NewScanner(f)
	continued := false
	for n := uint(1); sc.Scan(); n++ {
		line, ok := strings.CutPrefix(sc.Text(), "\t")
		if !ok {
			continued = false
			continue
		}
		if !continued {
			line = strings.TrimLeft(line, "@-+")
		}
		continued = strings.HasSuffix(line, `\`)
		script.WriteString(expandMake(line) + "\n")
		lines = append(lines, n)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return scanShell(strings.NewReader(script.String()), rel, func(l uint) uint {
		if l >= 1 && int(l) <= len(lines) {
			return lines[l-1]
		}
		return l
	})
}

// expandMake turns a recipe line into the shell make hands over: $$ is $,
// and every other make reference becomes ${MAKEVAR}.
func expandMake(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case '$':
			b.WriteByte('$')
		case '(', '{':
			open, closing, depth := s[i], map[byte]byte{'(': ')', '{': '}'}[s[i]], 0
			for ; i < len(s); i++ {
				if s[i] == open {
					depth++
				} else if s[i] == closing {
					if depth--; depth == 0 {
						break
					}
				}
			}
			b.WriteString("${MAKEVAR}")
		default:
			b.WriteString("${MAKEVAR}")
		}
	}
	return b.String()
}

// scanShell parses a bash script and returns each program it runs whose
// name is written out (a variable's value cannot be known), leaving out
// builtins, the script's own functions and relative paths (the repository's
// own scripts and binaries). lineOf maps a line of src to the line reported.
func scanShell(src io.Reader, rel string, lineOf func(uint) uint) ([]run, error) {
	file, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(src, rel)
	if err != nil {
		return nil, err
	}
	funcs := map[string]bool{}
	syntax.Walk(file, func(n syntax.Node) bool {
		if fd, ok := n.(*syntax.FuncDecl); ok {
			funcs[fd.Name.Value] = true
		}
		return true
	})
	var runs []run
	syntax.Walk(file, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok {
			return true
		}
		for _, w := range commandWords(call.Args) {
			name := literal(w)
			if name == "" || funcs[name] || interp.IsBuiltin(name) || (strings.Contains(name, "/") && !strings.HasPrefix(name, "/")) {
				continue
			}
			runs = append(runs, run{name, rel + ":" + strconv.FormatUint(uint64(lineOf(w.Pos().Line())), 10)})
		}
		return true
	})
	return runs, nil
}

// commandWords returns the words naming the programs a command line runs:
// its first word, and through exec, command, env, flock, nice, timeout and
// xargs the program these run (the last four are programs themselves).
// `command -v NAME` looks NAME up, which counts as running it.
func commandWords(args []*syntax.Word) []*syntax.Word {
	var out []*syntax.Word
	for len(args) > 0 {
		name, rest := literal(args[0]), args[1:]
		switch name {
		case "exec":
			rest = skipFlags(rest, "-a")
		case "command":
			if len(rest) > 0 && (literal(rest[0]) == "-v" || literal(rest[0]) == "-V") {
				return append(out, rest[1:]...)
			}
			rest = skipFlags(rest)
		case "env", "nice", "xargs":
			out = append(out, args[0])
			rest = skipFlags(rest, "-u", "-n", "-I", "-d")
			for name == "env" && len(rest) > 0 && strings.Contains(literal(rest[0]), "=") {
				rest = rest[1:]
			}
		case "timeout", "flock":
			out = append(out, args[0])
			if name == "flock" {
				rest = skipFlags(rest, "-w", "-E", "--timeout", "--conflict-exit-code")
			} else {
				rest = skipFlags(rest, "-s", "-k", "--signal", "--kill-after")
			}
			if len(rest) > 0 {
				rest = rest[1:] // the duration, or the lock file
			}
			if len(rest) > 0 && literal(rest[0]) == "-c" {
				return out // flock runs a shell string
			}
		default:
			return append(out, args[0])
		}
		args = rest
	}
	return out
}

// skipFlags drops leading words that start with '-', and the value that
// follows each of withValue.
func skipFlags(args []*syntax.Word, withValue ...string) []*syntax.Word {
	for len(args) > 0 {
		w := literal(args[0])
		if !strings.HasPrefix(w, "-") || w == "-" {
			break
		}
		args = args[1:]
		if slices.Contains(withValue, w) && len(args) > 0 {
			args = args[1:]
		}
	}
	return args
}

// literal is the value of a word written out in full (plain, 'single' or
// "double" quoted without expansions), or "".
func literal(w *syntax.Word) string {
	var b strings.Builder
	for _, part := range w.Parts {
		switch p := part.(type) {
		case *syntax.Lit:
			b.WriteString(p.Value)
		case *syntax.SglQuoted:
			b.WriteString(p.Value)
		case *syntax.DblQuoted:
			for _, q := range p.Parts {
				lit, ok := q.(*syntax.Lit)
				if !ok {
					return ""
				}
				b.WriteString(lit.Value)
			}
		default:
			return ""
		}
	}
	return b.String()
}
