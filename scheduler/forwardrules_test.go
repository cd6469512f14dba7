package scheduler

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseForwardRules(t *testing.T) {
	good := map[string]string{
		"":                                 "",
		"10.96.0.0/12:80":                  "10.96.0.0/12:80",
		" 10.0.0.1:443 , db.example.com:*": "10.0.0.1:443,db.example.com:*",
		"*.svc.cluster.local:8000-8999\t[fd00::/8]:22\n[::1]:80": "*.svc.cluster.local:8000-8999,[fd00::/8]:22,[::1]:80",
		"Web.Example.COM.:80": "Web.Example.COM.:80",
		"1password.com:443":   "1password.com:443",
	}
	for in, want := range good {
		r, err := ParseForwardRules(in)
		if err != nil {
			t.Errorf("ParseForwardRules(%q): %v", in, err)
			continue
		}
		if r.String() != want {
			t.Errorf("ParseForwardRules(%q).String() = %q, want %q", in, r.String(), want)
		}
		if r.IsZero() != (want == "") {
			t.Errorf("ParseForwardRules(%q).IsZero() = %v", in, r.IsZero())
		}
	}
	bad := map[string]string{
		"10.0.0.0/8":           "no port",
		"10.0.0.0/8:0":         "not a port",
		"10.0.0.0/8:65536":     "not a port",
		"10.0.0.0/8:90-80":     "runs backwards",
		"10.0.0.0/8:http":      "not a port",
		"10.1.2.3/8:80":        "did you mean 10.0.0.0/8",
		"10.0.0.0/33:80":       "not a CIDR",
		"300.1.1.1:80":         "not an IP address",
		"fd00::/8:80":          "in brackets",
		"[fd00::/8:80":         "in brackets",
		"[10.0.0.1]:80":        "not an IPv6 address",
		"[::ffff:10.0.0.1]:80": "not an IPv6 address",
		"*:80":                 "not an address",
		"a.*.example.com:80":   "not an address",
		"bad_name.com:80":      "not a host name",
		"-x.com:80":            "not a host name",
	}
	for in, want := range bad {
		_, err := ParseForwardRules(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseForwardRules(%q) = %v, want an error containing %q", in, err, want)
		}
		if err != nil && !strings.Contains(err.Error(), "rule \"") {
			t.Errorf("ParseForwardRules(%q): error %q does not name the rule", in, err)
		}
	}
}

// mustParseForwardRules is ParseForwardRules for constants.
func mustParseForwardRules(t *testing.T, s string) ForwardRules {
	t.Helper()
	r, err := ParseForwardRules(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// TestForwardDecisions covers how a request is judged: before resolution
// (check) and on the addresses the pod resolved (pick).
func TestForwardDecisions(t *testing.T) {
	r := mustParseForwardRules(t, "10.96.0.0/12:80, 192.168.5.5:5432, *.svc.cluster.local:80, db.example.com:5432, [fd00::/8]:443, 127.0.0.1:9000")
	for _, tc := range []struct {
		name     string
		host     string
		port     uint16
		resolved []netip.Addr
		want     string // the address connected to; "" when refused
		err      error
	}{
		{"literal in a CIDR", "10.96.0.10", 80, nil, "10.96.0.10", nil},
		{"literal, port not allowed", "10.96.0.10", 81, nil, "", ErrForwardDenied},
		{"literal outside every CIDR", "10.200.0.1", 80, nil, "", ErrForwardDenied},
		{"mapped v4 literal", "::ffff:10.96.0.10", 80, nil, "10.96.0.10", nil},
		{"v6 literal", "fd00::1", 443, nil, "fd00::1", nil},
		{"literal with a zone", "fe80::1%eth0", 443, nil, "", ErrForwardDenied},
		{"port 0", "10.96.0.10", 0, nil, "", ErrForwardDenied},
		{"allowed name", "web.demo.svc.cluster.local", 80, addrs("10.96.4.4"), "10.96.4.4", nil},
		{"allowed name, any address", "web.demo.svc.cluster.local", 80, addrs("172.16.0.9"), "172.16.0.9", nil},
		{"allowed name, upper case and dot", "WEB.demo.svc.cluster.local.", 80, addrs("10.96.4.4"), "10.96.4.4", nil},
		{"wildcard needs a label", "svc.cluster.local", 80, addrs("172.16.0.9"), "", ErrForwardDenied},
		{"name rule, wrong port", "web.demo.svc.cluster.local", 443, addrs("10.96.4.4"), "", ErrForwardDenied},
		{"unlisted name into a CIDR", "other.example", 80, addrs("10.96.7.7"), "10.96.7.7", nil},
		{"unlisted name outside", "other.example", 80, addrs("8.8.8.8"), "", ErrForwardDenied},
		{"unlisted name, no rule for port", "other.example", 22, nil, "", ErrForwardDenied},
		{"rebinding to loopback", "evil.svc.cluster.local", 80, addrs("127.0.0.1"), "", ErrForwardDenied},
		{"rebinding to metadata", "evil.svc.cluster.local", 80, addrs("169.254.169.254"), "", ErrForwardDenied},
		{"rebinding to v6 loopback", "evil.svc.cluster.local", 80, addrs("::1"), "", ErrForwardDenied},
		{"rebinding to unspecified", "evil.svc.cluster.local", 80, addrs("0.0.0.0"), "", ErrForwardDenied},
		{"first allowed address wins", "evil.svc.cluster.local", 80, addrs("127.0.0.1", "10.1.1.1"), "10.1.1.1", nil},
		{"name and address rule", "db.example.com", 5432, addrs("192.168.5.5"), "192.168.5.5", nil},
		{"loopback allowed explicitly", "local.example", 9000, addrs("127.0.0.1"), "127.0.0.1", nil},
		{"not found", "web.demo.svc.cluster.local", 80, nil, "", ErrHostNotFound},
		{"not a name", "a b", 80, nil, "", ErrForwardDenied},
		{"shell metacharacters", "$(reboot)", 80, nil, "", ErrForwardDenied},
		{"leading hyphen", "-oProxyCommand", 80, nil, "", ErrForwardDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := r.check(tc.host, tc.port)
			var got netip.Addr
			if err == nil {
				in := tc.resolved
				if req.literal {
					in = []netip.Addr{netip.MustParseAddr(req.host)}
				}
				got, err = req.pick(in)
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %v, %v; want %v", got, err, tc.err)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("got %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestForwardZeroRulesAllowNothing(t *testing.T) {
	var r ForwardRules
	for _, host := range []string{"10.0.0.1", "example.com", "::1"} {
		if _, err := r.check(host, 80); !errors.Is(err, ErrForwardDenied) {
			t.Errorf("zero rules, %s: %v", host, err)
		}
	}
}
