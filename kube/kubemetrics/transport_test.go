package kubemetrics

import "testing"

func TestResourceOf(t *testing.T) {
	for path, want := range map[string]string{
		"/api/v1/namespaces/guests/pods":                          "pods",
		"/api/v1/namespaces/guests/pods/podgate-default-x":        "pods",
		"/api/v1/namespaces/guests/pods/podgate-default-x/exec":   "pods/exec",
		"/apis/coordination.k8s.io/v1/namespaces/guests/leases/a": "leases",
		"/api/v1/namespaces/guests":                               "namespaces",
		"/readyz":                                                 "other",
	} {
		if got := resourceOf(path); got != want {
			t.Errorf("resourceOf(%q) = %q, want %q", path, got, want)
		}
	}
}
