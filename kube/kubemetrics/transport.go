package kubemetrics

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podgate/podgate/scheduler"
)

// Writes counts podgate's writes to the API server by resource and verb,
// and hands every request's context to scheduler.CountAPIRequest, which
// counts the request against the login whose critical path it is on. It
// sees every request of every client built from the process's one
// rest.Config, exec and port-forward upgrades included, because it wraps
// that config's transport (see CountingTransport).
type Writes struct {
	writes *prometheus.CounterVec
}

// NewWrites creates the counter and registers it on reg.
func NewWrites(reg prometheus.Registerer) (*Writes, error) {
	w := &Writes{writes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podgate_kube_writes_total",
		Help: "Kubernetes API writes made by podgate, by resource (pods, leases, pods/exec, ...) and verb (create, update, patch, delete).",
	}, []string{"resource", "verb"})}
	if err := reg.Register(w.writes); err != nil {
		return nil, err
	}
	return w, nil
}

// CountingTransport wraps rt (for rest.Config.Wrap).
func (w *Writes) CountingTransport(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		scheduler.CountAPIRequest(req.Context())
		if verb := writeVerb(req.Method); verb != "" {
			w.writes.WithLabelValues(resourceOf(req.URL.Path), verb).Inc()
		}
		return rt.RoundTrip(req)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// writeVerb is the API verb of a writing HTTP method, or "".
func writeVerb(method string) string {
	switch method {
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return ""
}

// resourceOf names the resource of an API path, with its subresource:
// /api/v1/namespaces/ns/pods/name/exec is "pods/exec". The namespace, the
// group and the object's name are left out, so the label stays small.
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	// /api/v1/... or /apis/group/version/...
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return "other"
	}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	switch len(parts) {
	case 0:
		return "namespaces"
	case 1, 2:
		return parts[0]
	default:
		return parts[0] + "/" + parts[2]
	}
}
