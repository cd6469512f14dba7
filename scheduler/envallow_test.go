package scheduler

import "testing"

// TestEnvAllowPrefix: the allowlist takes exact names and "PREFIX*"
// entries, as PODGATE_ENV_ALLOW documents ("LANG,LC_*" by default), and
// nothing else gets through.
func TestEnvAllowPrefix(t *testing.T) {
	pol := policy("default")
	pol.EnvAllow = []string{"LANG", "LC_*", "TZ"}
	allow := settings(pol).AllowEnv
	for name, want := range map[string]bool{
		"LANG": true, "LC_ALL": true, "LC_CTYPE": true, "LC_": true, "TZ": true,
		"LANGUAGE": false, "LD_PRELOAD": false, "PATH": false, "BASH_ENV": false, "TZX": false, "LC": false, "": false,
	} {
		if got := allow(name); got != want {
			t.Errorf("AllowEnv(%q) = %v, want %v", name, got, want)
		}
	}
	pol.EnvAllow = nil
	if settings(pol).AllowEnv("LANG") {
		t.Error("an empty allowlist allows LANG")
	}
}
