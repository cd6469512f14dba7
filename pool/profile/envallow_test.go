package profile

import (
	"slices"
	"testing"
)

// TestParseEnvNamesPrefix: the env-allow annotation takes the same
// "PREFIX*" entries as PODGATE_ENV_ALLOW, and still refuses names that
// are not variable names.
func TestParseEnvNamesPrefix(t *testing.T) {
	got, err := parseEnvNames("LANG, LC_*,TZ")
	if err != nil || !slices.Equal(got, []string{"LANG", "LC_*", "TZ"}) {
		t.Errorf("parseEnvNames = %q, %v", got, err)
	}
	for _, bad := range []string{"*", "1X*", "LC_*X", "a b"} {
		if _, err := parseEnvNames(bad); err == nil {
			t.Errorf("parseEnvNames(%q) accepted", bad)
		}
	}
}
