package scheduler

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ForwardRules is a profile's allowlist of ssh -L and -D destinations beyond
// the user's own pod. Connections to them are opened from inside the pod (see
// Execer.Relay), so the pod's NetworkPolicy applies on top of these rules.
//
// A rule is DEST:PORTS. DEST is an IPv4 address or CIDR (10.96.0.0/12), an
// IPv6 one in brackets ([fd00::/8]), a host name (db.example.com) or a
// wildcard of names under a domain (*.svc.cluster.local, which matches
// a.svc.cluster.local and a.b.svc.cluster.local but not svc.cluster.local).
// PORTS is a port, a range (8000-8999) or * for every port. Rules are
// separated by commas or white space.
//
// How a request is judged (see pick): the address the relay finally connects
// to must be inside an address rule for the port; or the client asked for a
// host name that a name rule allows for the port, and the address that name
// resolved to in the pod is not one that name tricks aim at (loopback,
// link-local including cloud metadata endpoints, multicast, unspecified),
// unless an address rule allows that address explicitly. The pod resolves a
// name once, podgate checks the addresses it got, and the relay connects to
// the checked address itself, so a name that resolves differently a second
// time (DNS rebinding) cannot change where the connection goes.
//
// The zero value allows nothing.
type ForwardRules struct {
	rules []forwardRule
}

// forwardRule is one parsed rule: an address prefix, or a host name (exact,
// or a wildcard holding the suffix with its leading dot), and a port range.
type forwardRule struct {
	prefix   netip.Prefix // valid for address rules
	name     string       // lower case; for wildcards ".domain"
	wildcard bool
	lo, hi   uint16
	text     string // as written, for String
}

// ParseForwardRules reads an allowlist. Its errors name the offending rule
// and say what is wrong, for a one-line configuration error.
func ParseForwardRules(s string) (ForwardRules, error) {
	var r ForwardRules
	for _, field := range strings.FieldsFunc(s, func(c rune) bool {
		return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'
	}) {
		rule, err := parseForwardRule(field)
		if err != nil {
			return ForwardRules{}, fmt.Errorf("rule %q: %w", field, err)
		}
		r.rules = append(r.rules, rule)
	}
	return r, nil
}

func parseForwardRule(s string) (forwardRule, error) {
	rule := forwardRule{text: s}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return rule, errors.New("no port: want DEST:PORT, DEST:LOW-HIGH or DEST:*")
	}
	dest, ports := s[:i], s[i+1:]
	var err error
	if rule.lo, rule.hi, err = parsePorts(ports); err != nil {
		return rule, err
	}
	if inner, ok := strings.CutPrefix(dest, "["); ok {
		inner, ok = strings.CutSuffix(inner, "]")
		if !ok {
			return rule, errors.New("an IPv6 address must be written in brackets, e.g. [fd00::/8]:443")
		}
		rule.prefix, err = parsePrefix(inner, true)
		return rule, err
	}
	if strings.ContainsRune(dest, ':') {
		return rule, errors.New("an IPv6 address must be written in brackets, e.g. [fd00::/8]:443")
	}
	if dest != "" && (dest[0] >= '0' && dest[0] <= '9') && !strings.ContainsFunc(dest, isLetter) {
		rule.prefix, err = parsePrefix(dest, false)
		return rule, err
	}
	name := strings.ToLower(strings.TrimSuffix(dest, "."))
	if suffix, ok := strings.CutPrefix(name, "*."); ok {
		rule.wildcard, name = true, suffix
	}
	if name == "" || strings.Contains(name, "*") {
		return rule, errors.New("not an address, CIDR, host name or *.domain wildcard")
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return rule, fmt.Errorf("%q is not a host name: %s", name, errs[0])
	}
	rule.name = name
	if rule.wildcard {
		rule.name = "." + name
	}
	return rule, nil
}

func isLetter(c rune) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

// parsePrefix reads an address or CIDR of the given family. A CIDR with
// host bits set is refused, as it is most likely a typo.
func parsePrefix(s string, v6 bool) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.ContainsRune(s, '/') {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, fmt.Errorf("%q is not a CIDR", s)
		}
		if p.Masked() != p {
			return p, fmt.Errorf("%s has bits set after the prefix; did you mean %s?", s, p.Masked())
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, fmt.Errorf("%q is not an IP address", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Zone() != "" {
		return p, fmt.Errorf("%q: zones are not allowed", s)
	}
	if p.Addr().Is6() != v6 || p.Addr().Is4In6() {
		if v6 {
			return p, fmt.Errorf("%q in brackets is not an IPv6 address", s)
		}
		return p, fmt.Errorf("%q is not an IPv4 address", s)
	}
	return p, nil
}

// parsePorts reads N, N-M or *.
func parsePorts(s string) (lo, hi uint16, err error) {
	if s == "*" {
		return 1, 65535, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	l, err1 := parsePort(a)
	h, err2 := parsePort(b)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, err
	}
	if l > h {
		return 0, 0, fmt.Errorf("port range %s runs backwards", s)
	}
	return l, h, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port (1-65535, a range such as 8000-8999, or *)", s)
	}
	return uint16(n), nil
}

// IsZero reports whether the rules allow nothing.
func (r ForwardRules) IsZero() bool { return len(r.rules) == 0 }

// String returns the rules as written, comma-separated.
func (r ForwardRules) String() string {
	texts := make([]string, len(r.rules))
	for i, rule := range r.rules {
		texts[i] = rule.text
	}
	return strings.Join(texts, ",")
}

func (f forwardRule) hasPort(port uint16) bool { return port >= f.lo && port <= f.hi }

// allowsAddr reports whether an address rule covers a:port.
func (r ForwardRules) allowsAddr(a netip.Addr, port uint16) bool {
	a = a.Unmap()
	for _, rule := range r.rules {
		if rule.prefix.IsValid() && rule.hasPort(port) && rule.prefix.Contains(a) {
			return true
		}
	}
	return false
}

// allowsName reports whether a name rule covers name:port; name is already
// normalised (lower case, no trailing dot).
func (r ForwardRules) allowsName(name string, port uint16) bool {
	for _, rule := range r.rules {
		if rule.name == "" || !rule.hasPort(port) {
			continue
		}
		if rule.wildcard && strings.HasSuffix(name, rule.name) || !rule.wildcard && name == rule.name {
			return true
		}
	}
	return false
}

// addrRulesFor reports whether any address rule covers port, so that a
// name no name rule allows may still resolve into an allowed address.
func (r ForwardRules) addrRulesFor(port uint16) bool {
	for _, rule := range r.rules {
		if rule.prefix.IsValid() && rule.hasPort(port) {
			return true
		}
	}
	return false
}

// rebindTarget reports whether a is an address that an allowed host name
// must not lead to unless an address rule says so: the pod's own loopback,
// link-local addresses (cloud metadata endpoints live there), multicast and
// the unspecified address.
func rebindTarget(a netip.Addr) bool {
	return a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified()
}

// forwardRequest is one direct-tcpip request checked against the rules
// before anything runs in the pod.
type forwardRequest struct {
	host    string // normalised name, or the address's canonical text
	port    uint16
	literal bool // host is an IP address
	named   bool // a name rule allows host:port
	rules   ForwardRules
}

// check validates host and refuses at once a request no address could
// satisfy. The error wraps ErrForwardDenied.
func (r ForwardRules) check(host string, port uint16) (forwardRequest, error) {
	req := forwardRequest{port: port, rules: r}
	if port == 0 {
		return req, fmt.Errorf("port 0: %w", ErrForwardDenied)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return req, fmt.Errorf("address %q has a zone: %w", host, ErrForwardDenied)
		}
		req.host, req.literal = a.Unmap().String(), true
		if !r.allowsAddr(a, port) {
			return req, fmt.Errorf("%s port %d is in no address rule: %w", req.host, port, ErrForwardDenied)
		}
		return req, nil
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return req, fmt.Errorf("%q is neither an IP address nor a host name: %w", host, ErrForwardDenied)
	}
	req.host, req.named = name, r.allowsName(name, port)
	if !req.named && !r.addrRulesFor(port) {
		return req, fmt.Errorf("%s port %d matches no rule: %w", name, port, ErrForwardDenied)
	}
	return req, nil
}

// pick chooses, among the addresses the pod resolved the request's host to
// (or the literal address itself), the first the rules allow connecting to.
// It fails with ErrHostNotFound for an empty list and ErrForwardDenied when
// none is allowed.
func (q forwardRequest) pick(addrs []netip.Addr) (netip.Addr, error) {
	if len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("%s: %w", q.host, ErrHostNotFound)
	}
	for _, a := range addrs {
		a = a.Unmap()
		if a.Zone() != "" {
			continue
		}
		if q.rules.allowsAddr(a, q.port) || (q.named && !rebindTarget(a)) {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%s port %d resolved to %v, none of them allowed: %w", q.host, q.port, addrs, ErrForwardDenied)
}
