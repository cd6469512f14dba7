package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/podgate/podgate/scheduler"
)

// This file holds validation: the per-variable rules declared by the enum,
// min and check tags, and the rules that span several variables.

// check applies the enum, min and check tags to the parsed field f, whose
// text was raw.
func (v *envVar) check(f reflect.Value, raw string) []error {
	var problems []error
	if len(v.Enum) > 0 && !slices.Contains(v.Enum, f.String()) {
		problems = append(problems, v.problem(raw, "not one of "+strings.Join(v.Enum, ", "), ""))
	}
	if v.Min != "" {
		if below, want := v.belowMin(f); below {
			problems = append(problems, v.problem(raw, "must be at least "+want, ""))
		}
	}
	if v.Check == "" {
		return problems
	}
	items := []string{f.String()}
	switch {
	case f.Kind() == reflect.Slice:
		items = f.Interface().([]string)
	case v.Check == "pathlist":
		items = strings.Split(f.String(), string(os.PathListSeparator))
	}
	for _, item := range items {
		if item == "" {
			continue
		}
		if problem, want := checkValue(v.Check, item); problem != "" {
			if len(items) > 1 {
				problem = fmt.Sprintf("%q: %s", item, problem)
			}
			problems = append(problems, v.problem(raw, problem, want))
		}
	}
	return problems
}

// belowMin reports whether f is below the min tag, and the minimum as text.
func (v *envVar) belowMin(f reflect.Value) (bool, string) {
	switch f.Interface().(type) {
	case time.Duration:
		min, _ := time.ParseDuration(v.Min)
		return time.Duration(f.Int()) < min, v.Min
	case int:
		min, _ := strconv.Atoi(v.Min)
		return f.Int() < int64(min), v.Min
	case float32:
		min, _ := strconv.ParseFloat(v.Min, 64)
		return f.Float() < min, v.Min
	}
	return false, ""
}

// checkValue applies one check tag to one value. It returns the problem and
// the accepted form, or "" when the value is fine.
func checkValue(check, value string) (problem, want string) {
	switch check {
	case "file", "dir", "path", "pathlist":
		st, err := os.Stat(value)
		switch {
		case err != nil:
			return statProblem(err), "an existing, readable path"
		case (check == "file" || check == "pathlist") && st.IsDir():
			return "is a directory", "a file"
		case check == "dir" && !st.IsDir():
			return "is not a directory", "a directory"
		}
	case "hostport":
		_, port, err := net.SplitHostPort(value)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
			return "not a host:port address", "e.g. 127.0.0.1:9090 or :9090"
		}
	case "dnslabel":
		if errs := validation.IsDNS1123Label(value); len(errs) > 0 {
			return "not a DNS label: " + errs[0], "lower-case letters, digits and '-', e.g. podgate"
		}
	case "labelvalue":
		if errs := validation.IsValidLabelValue(value); len(errs) > 0 {
			return "not a Kubernetes label value: " + errs[0], "e.g. podgate-0"
		}
	case "dnssubdomain":
		if errs := validation.IsDNS1123Subdomain(value); len(errs) > 0 {
			return "not a Kubernetes object name: " + errs[0], "lower-case names such as regcred"
		}
	case "forwardrules":
		if _, err := scheduler.ParseForwardRules(value); err != nil {
			return err.Error(), "rules such as 10.96.0.0/12:80,*.svc.cluster.local:443"
		}
	}
	return "", ""
}

// statProblem says briefly why a path cannot be used.
func statProblem(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file or directory"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	}
	return err.Error()
}

// crossCheck applies the rules that involve more than one variable, or that
// depend on the mode. It runs only once every variable parsed on its own.
func crossCheck(c *Config, vars []envVar, rawOf func(*envVar) string) []error {
	fv := fieldVars(c, vars)
	var problems []error
	bad := func(field any, problem, want string) {
		v := fv(field)
		problems = append(problems, v.problem(rawOf(v), problem, want))
	}

	if c.Profile.ForwardAllow != "" && !c.Profile.PortForwarding {
		bad(&c.Profile.ForwardAllow, "has no effect while PODGATE_PORT_FORWARDING is false", "PODGATE_PORT_FORWARDING=true, or no rules")
	}
	if m := c.Profile.MaxReconnectWindow; m > 0 && c.Profile.ReconnectWindow > m {
		bad(&c.Profile.ReconnectWindow, fmt.Sprintf("longer than PODGATE_MAX_RECONNECT_WINDOW (%s)", m), "at most PODGATE_MAX_RECONNECT_WINDOW")
	}
	if c.Profile.PoolMin > c.Profile.PoolMax {
		bad(&c.Profile.PoolMin, fmt.Sprintf("more than PODGATE_POOL_MAX (%d)", c.Profile.PoolMax), "at most PODGATE_POOL_MAX")
	}
	for _, pat := range c.Profile.EnvAllow {
		name := strings.TrimSuffix(pat, "*")
		if name == "" || strings.ContainsFunc(name, func(r rune) bool {
			return r != '_' && (r < 'A' || r > 'Z') && (r < 'a' || r > 'z') && (r < '0' || r > '9')
		}) {
			bad(&c.Profile.EnvAllow, fmt.Sprintf("%q is not a variable name or prefix", pat), "names such as LANG or LC_*, comma-separated")
		}
	}

	switch c.Auth.Mode {
	case AuthKeys:
		if _, err := os.Stat(c.Auth.AuthorizedKeys); err != nil {
			bad(&c.Auth.AuthorizedKeys, "cannot be read in keys mode: "+statProblem(err), "an existing authorized_keys file or directory")
		}
	case AuthWebhook:
		u, err := url.Parse(c.Auth.WebhookURL)
		if c.Auth.WebhookURL == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad(&c.Auth.WebhookURL, "not an http(s) URL, which webhook mode needs", "e.g. https://auth.example/podgate")
		}
	case AuthDemo:
		// Demo mode is for `make run` on loopback; anywhere else the
		// operator must insist.
		if !c.Auth.DemoInsecure && !loopbackListen(c.SSH.Listen) {
			bad(&c.Auth.Mode, "lets anyone log in, so on the non-loopback address "+c.SSH.Listen+" it also needs PODGATE_DEMO_INSECURE=true", "keys or webhook for real use, or a loopback PODGATE_LISTEN")
		}
	}
	if (c.Auth.WebhookCertFile == "") != (c.Auth.WebhookKeyFile == "") {
		bad(&c.Auth.WebhookCertFile, "must be set together with PODGATE_AUTH_WEBHOOK_KEY_FILE", "both or neither")
	}
	if (c.Kube.CertFile == "") != (c.Kube.KeyFile == "") {
		bad(&c.Kube.CertFile, "must be set together with PODGATE_KUBE_KEY_FILE", "both or neither")
	}
	if c.Kube.Token != "" && c.Kube.TokenFile != "" {
		bad(&c.Kube.TokenFile, "set together with PODGATE_KUBE_TOKEN", "only one of the two")
	}
	if p := c.SSH.HostKeyPath; p != "" {
		checkParentDir(p, func(problem string) { bad(&c.SSH.HostKeyPath, problem, "a file in an existing directory") })
	}
	if p := c.Ops.AuditLog; p != AuditStdout && p != AuditOff {
		checkParentDir(p, func(problem string) { bad(&c.Ops.AuditLog, problem, "stdout, off, or a file in an existing directory") })
	}

	checkLoginSettings(c, bad)

	if c.Pool.ReplicaID == "" {
		host, err := os.Hostname()
		if err != nil {
			bad(&c.Pool.ReplicaID, "unset and the host name is unknown: "+err.Error(), "a name such as podgate-0")
		} else if errs := validation.IsValidLabelValue(host); len(errs) > 0 {
			bad(&c.Pool.ReplicaID, fmt.Sprintf("unset and the host name %q is not a label value", host), "a name such as podgate-0")
		} else {
			c.Pool.ReplicaID = host
		}
	}
	return problems
}

// checkParentDir reports through bad when path's directory does not exist.
func checkParentDir(path string, bad func(problem string)) {
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil {
		bad("directory " + dir + ": " + statProblem(err))
	} else if !st.IsDir() {
		bad(dir + " is not a directory")
	}
}

// fieldVars returns a lookup from a pointer to one of c's fields to the
// variable that sets it, so cross-field rules name the right variable
// without repeating its name.
func fieldVars(c *Config, vars []envVar) func(field any) *envVar {
	type key struct {
		addr uintptr
		typ  reflect.Type
	}
	root := reflect.ValueOf(c).Elem()
	m := make(map[key]*envVar, len(vars))
	for i := range vars {
		f := root.FieldByIndex(vars[i].Index).Addr()
		m[key{f.Pointer(), f.Type()}] = &vars[i]
	}
	return func(field any) *envVar {
		p := reflect.ValueOf(field)
		return m[key{p.Pointer(), p.Type()}]
	}
}

// loopbackListen reports whether a host:port listen address binds loopback
// only ("localhost", 127.0.0.0/8 or ::1; an empty host means every interface).
func loopbackListen(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
