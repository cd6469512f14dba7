package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestEnvCommandListsEveryVariable(t *testing.T) {
	for _, args := range [][]string{nil, {"-markdown"}} {
		var out, errOut bytes.Buffer
		if err := envCommand(args, &out, &errOut); err != nil {
			t.Fatalf("envCommand(%v): %v", args, err)
		}
		for _, v := range configVars() {
			if !strings.Contains(out.String(), v.Name) {
				t.Errorf("envCommand(%v) does not mention %s", args, v.Name)
			}
			// Long descriptions are wrapped in the text form, so look
			// for their first words only.
			if first := strings.Join(strings.Fields(v.Desc)[:3], " "); !strings.Contains(out.String(), first) {
				t.Errorf("envCommand(%v) lacks the description of %s", args, v.Name)
			}
		}
	}
}

func TestEnvMarkdownIsATable(t *testing.T) {
	var out bytes.Buffer
	if err := writeEnvMarkdown(&out); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		// Four columns: five unescaped pipes.
		if n := strings.Count(line, "|") - strings.Count(line, `\|`); n != 5 {
			t.Errorf("row has %d cell separators, want 5: %s", n, line)
		}
	}
	if !strings.Contains(out.String(), "| `PODGATE_POOL_MIN` | `2` | whole number, at least 0 |") {
		t.Errorf("PODGATE_POOL_MIN row missing or changed:\n%s", out.String())
	}
}

func TestEnvCommandRejectsUnknownFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := envCommand([]string{"-yaml"}, &out, &errOut); err == nil {
		t.Error("envCommand(-yaml) succeeded, want an error")
	}
}

func TestUsageIncludesVariables(t *testing.T) {
	var out bytes.Buffer
	if err := writeUsage(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "podgate env") || !strings.Contains(out.String(), "PODGATE_LISTEN") {
		t.Errorf("usage lacks commands or variables:\n%s", out.String())
	}
}
