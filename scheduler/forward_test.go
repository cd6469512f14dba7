package scheduler

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/utils/clock"
)

// TestDialRoutes: the user's own pod is reached through its port-forward,
// anything else through the relay and only when the rules allow it.
func TestDialRoutes(t *testing.T) {
	pol := policy("default")
	pol.PortForwarding = true
	pol.ForwardAllow = mustParseForwardRules(t, "10.96.0.0/12:80, *.svc.cluster.local:80")
	pools := newFakePools(pol)
	pools.idle = 1
	ex := &fakeExecer{resolved: map[string][]netip.Addr{
		"web.demo.svc.cluster.local": addrs("10.96.3.3"),
		"evil.svc.cluster.local":     addrs("127.0.0.1"),
		"example.com":                addrs("8.8.8.8"),
	}}
	s := newTestScheduler(t, pools, ex, clock.RealClock{})
	a, err := s.Attach(context.Background(), id("alice", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, host := range []string{"localhost", "127.0.0.1", "::1", "pod-1"} {
		c, err := a.Dial(ctx, host, 8080)
		if err != nil {
			t.Fatalf("Dial(%s): %v", host, err)
		}
		c.Close()
	}
	for _, host := range []string{"10.96.0.10", "web.demo.svc.cluster.local", "WEB.demo.svc.cluster.local."} {
		c, err := a.Dial(ctx, host, 80)
		if err != nil {
			t.Fatalf("Dial(%s): %v", host, err)
		}
		c.Close()
	}
	// Not allowed: an address outside the CIDR, an allowed name that
	// resolves to loopback, and an unlisted name resolving outside.
	for _, host := range []string{"10.200.0.1", "evil.svc.cluster.local", "example.com"} {
		if _, err := a.Dial(ctx, host, 80); !errors.Is(err, ErrForwardDenied) {
			t.Errorf("Dial(%s) = %v, want ErrForwardDenied", host, err)
		} else if !strings.Contains(err.Error(), host) {
			t.Errorf("Dial(%s): error %q does not name the destination", host, err)
		}
	}
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if want := []uint16{8080, 8080, 8080, 8080}; !slices.Equal(ex.dialed, want) {
		t.Errorf("own-pod dials %v, want %v", ex.dialed, want)
	}
	if want := []string{"10.96.0.10:80", "10.96.3.3:80", "10.96.3.3:80"}; !slices.Equal(ex.relayed, want) {
		t.Errorf("relayed to %v, want %v", ex.relayed, want)
	}
	for _, c := range []struct {
		target, result string
		want           float64
	}{{"pod", "ok", 4}, {"relay", "ok", 3}, {"relay", "denied", 3}} {
		var m dto.Metric
		if err := s.metrics.forwards.WithLabelValues("default", c.target, c.result).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != c.want {
			t.Errorf("forwards{%s,%s} = %v, want %v", c.target, c.result, got, c.want)
		}
	}
}
