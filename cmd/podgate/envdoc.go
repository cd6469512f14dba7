package main

import (
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// envVar describes one variable as Config's struct tags declare it. The same
// description drives parsing, validation and `podgate env`, so the
// documentation cannot drift from the code.
type envVar struct {
	Name       string       // full variable name, e.g. PODGATE_POOL_MIN or KUBECONFIG
	Group      string       // heading, from the group tag of the Config field
	Field      string       // Go path, e.g. Profile.PoolMin
	Index      []int        // field index path into Config
	Type       reflect.Type // the field's type
	Default    string
	HasDefault bool
	Desc       string
	Enum       []string
	Min        string
	Check      string
	Separator  string // list separator for slice fields
	Unprefixed bool
	Secret     bool
}

// configVars lists Config's variables in declaration order.
func configVars() []envVar {
	var vars []envVar
	root := reflect.TypeFor[Config]()
	for gi := range root.NumField() {
		group := root.Field(gi)
		for fi := range group.Type.NumField() {
			f := group.Type.Field(fi)
			name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
			def, hasDef := f.Tag.Lookup("envDefault")
			v := envVar{
				Name:       envPrefix + name,
				Group:      group.Tag.Get("group"),
				Field:      group.Name + "." + f.Name,
				Index:      []int{gi, fi},
				Type:       f.Type,
				Default:    def,
				HasDefault: hasDef,
				Desc:       f.Tag.Get("desc"),
				Min:        f.Tag.Get("min"),
				Check:      f.Tag.Get("check"),
				Separator:  f.Tag.Get("envSeparator"),
				Unprefixed: f.Tag.Get("unprefixed") == "true",
				Secret:     f.Tag.Get("secret") == "true",
			}
			if v.Unprefixed {
				v.Name = name
			}
			if e := f.Tag.Get("enum"); e != "" {
				v.Enum = strings.Split(e, "|")
			}
			if v.Separator == "" && f.Type.Kind() == reflect.Slice {
				v.Separator = ","
			}
			vars = append(vars, v)
		}
	}
	return vars
}

// parserKey is the key caarlos0/env looks up: the prefix plus the env tag.
func (v *envVar) parserKey() string {
	if v.Unprefixed {
		return envPrefix + v.Name
	}
	return v.Name
}

// problem builds the one-line error for this variable.
func (v *envVar) problem(value, problem, want string) *VarError {
	return &VarError{Var: v.Name, Value: value, Shown: value != "" && !v.Secret, Problem: problem, Want: want}
}

// accepts describes the accepted form of v in a few words.
func (v *envVar) accepts() string {
	if len(v.Enum) > 0 {
		return "one of " + strings.Join(v.Enum, ", ")
	}
	var s string
	switch v.Type {
	case reflect.TypeFor[time.Duration]():
		s = "duration (e.g. 30s, 5m)"
	case reflect.TypeFor[int]():
		s = "whole number"
	case reflect.TypeFor[float32]():
		s = "number"
	case reflect.TypeFor[bool]():
		s = "true or false"
	case reflect.TypeFor[resource.Quantity]():
		s = "Kubernetes quantity"
	case reflect.TypeFor[[]string]():
		s = "list"
		if v.Separator == " " {
			s = "words"
		}
	default:
		s = map[string]string{
			"file": "file path", "dir": "directory", "path": "path", "pathlist": "file paths",
			"hostport": "host:port", "dnslabel": "DNS label", "labelvalue": "label value",
			"forwardrules": "DEST:PORTS rules",
		}[v.Check]
		if s == "" {
			s = "text"
		}
	}
	if v.Min != "" {
		s += ", at least " + v.Min
	}
	return s
}

// envIntro is printed before the variable list in both forms.
const envIntro = `podgate is configured only through environment variables. A variable set
to the empty string means its default.`

// writeEnvText writes every variable, grouped, for a terminal.
func writeEnvText(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("%s\n", envIntro)
	group := ""
	for _, v := range configVars() {
		if v.Group != group {
			group = v.Group
			ew.printf("\n%s:\n", group)
		}
		def := v.Default
		if def == "" {
			def = "(empty)"
		}
		ew.printf("  %s=%s\n      [%s]\n", v.Name, def, v.accepts())
		for _, line := range wrap(v.Desc, 72) {
			ew.printf("      %s\n", line)
		}
	}
	return ew.err
}

// writeEnvMarkdown writes every variable as Markdown tables, one per group,
// for the README.
func writeEnvMarkdown(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("%s\n", strings.ReplaceAll(envIntro, "\n", " "))
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	group := ""
	for _, v := range configVars() {
		if v.Group != group {
			group = v.Group
			ew.printf("\n### %s\n\n| Variable | Default | Accepts | Meaning |\n| --- | --- | --- | --- |\n", group)
		}
		def := ""
		if v.Default != "" {
			def = "`" + v.Default + "`"
		}
		ew.printf("| `%s` | %s | %s | %s |\n", v.Name, cell(def), cell(v.accepts()), cell(v.Desc))
	}
	return ew.err
}

// envCommand implements `podgate env [-markdown]`.
func envCommand(args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("podgate env", flag.ContinueOnError)
	fset.SetOutput(stderr)
	markdown := fset.Bool("markdown", false, "print Markdown tables for the README")
	if err := fset.Parse(args); err != nil {
		return fmt.Errorf("parsing env flags: %w", err)
	}
	if *markdown {
		return writeEnvMarkdown(stdout)
	}
	return writeEnvText(stdout)
}

// writeUsage prints `podgate --help`: the commands, then the variables.
func writeUsage(w io.Writer) error {
	if _, err := io.WriteString(w, `Usage:
  podgate              run the SSH server
  podgate env          list the configuration variables
  podgate env -markdown  the same as Markdown tables

`); err != nil {
		return err
	}
	return writeEnvText(w)
}

// errWriter keeps the first write error so that the writers above can print
// freely and check once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

// wrap splits text into lines of at most width columns at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
