package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/podgate/podgate/scheduler"
)

// validEnv is the smallest environment that loads: keys mode needs an
// authorized_keys path that exists, and the replica id is pinned so that the
// test does not depend on the machine's host name.
func validEnv(t *testing.T) []string {
	t.Helper()
	keys := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(keys, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"PODGATE_AUTHORIZED_KEYS=" + keys, "PODGATE_REPLICA_ID=podgate-0", "HOME=/root"}
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := LoadConfig(validEnv(t))
	if err != nil {
		t.Fatalf("LoadConfig with defaults: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", cfg.SSH.Listen, "127.0.0.1:2222"},
		{"max auth tries", cfg.SSH.MaxAuthTries, 6},
		{"qps", cfg.Kube.QPS, float32(50)},
		{"burst", cfg.Kube.Burst, 100},
		{"namespace", cfg.Kube.Namespace, "podgate-guests"},
		{"image", cfg.Profile.Image, "localhost/podgate-debian:local"},
		{"pool min", cfg.Profile.PoolMin, 2},
		{"pool max", cfg.Profile.PoolMax, 10},
		{"pool grow", cfg.Profile.PoolGrow, true},
		{"mode", cfg.Profile.Mode, scheduler.ModeConnection},
		{"exec wrapper", cfg.Profile.ExecWrapper, []string{"/bin/sh", "-c"}},
		{"metrics addr", cfg.Ops.MetricsAddr, "127.0.0.1:9090"},
		{"log format", cfg.Ops.LogFormat, LogText},
		{"drain", cfg.Ops.DrainDeadline, time.Minute},
		{"cpu limit", cfg.Limits.CPULimit.String(), "1"},
		{"replica", cfg.Pool.ReplicaID, "podgate-0"},
		// Empty: the profile's own idle command, which exits on SIGTERM.
		{"idle command", len(cfg.Profile.IdleCommand), 0},
		{"pull policy", cfg.Profile.PullPolicy, "IfNotPresent"},
		{"pull secrets", len(cfg.Profile.PullSecrets), 0},
		{"forward allow", cfg.Profile.ForwardAllow, ""},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestLoadConfigReadsValues(t *testing.T) {
	environ := append(validEnv(t),
		"PODGATE_POOL_MIN=0", "PODGATE_POOL_GROW=false", "PODGATE_MODE=session", "PODGATE_IDLE_TIMEOUT=90s",
		"PODGATE_PORT_FORWARDING=true", "PODGATE_ENV_ALLOW=LANG,FOO_*", "PODGATE_KUBE_QPS=12.5",
		"PODGATE_POD_MEMORY_LIMIT=1Gi", "PODGATE_LOG_LEVEL=debug",
		"PODGATE_IMAGE_PULL_POLICY=Always", "PODGATE_IMAGE_PULL_SECRETS=regcred,mirror",
		"PODGATE_FORWARD_ALLOW=10.96.0.0/12:80, *.svc.cluster.local:443",
		"PODGATE_SERVICE_HOST=10.0.0.1", "PODGATE_PORT_22_TCP=tcp://10.0.0.1:22", // service links are tolerated
	)
	cfg, err := LoadConfig(environ)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.Profile.PoolMin != 0 || cfg.Profile.PoolGrow || cfg.Profile.Mode != scheduler.ModeSession || cfg.Profile.IdleTimeout != 90*time.Second ||
		!cfg.Profile.PortForwarding || !reflect.DeepEqual(cfg.Profile.EnvAllow, []string{"LANG", "FOO_*"}) ||
		cfg.Kube.QPS != 12.5 || cfg.Limits.MemoryLimit.Value() != 1<<30 || cfg.Ops.LogLevel.Level().String() != "DEBUG" ||
		cfg.Profile.PullPolicy != "Always" || !reflect.DeepEqual(cfg.Profile.PullSecrets, []string{"regcred", "mirror"}) ||
		cfg.Profile.ForwardAllow != "10.96.0.0/12:80, *.svc.cluster.local:443" {
		t.Errorf("values not read as set: %+v", cfg)
	}
}

func TestLoadConfigKubeconfigIsUnprefixed(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(append(validEnv(t), "KUBECONFIG="+kc))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.Kube.Kubeconfig != kc {
		t.Errorf("Kubeconfig = %q, want %q", cfg.Kube.Kubeconfig, kc)
	}
	// The prefixed spelling is not a second way in: it is an unknown variable.
	_, err = LoadConfig(append(validEnv(t), "PODGATE_KUBECONFIG="+kc))
	wantProblem(t, err, "PODGATE_KUBECONFIG", "unknown variable")
}

// TestLoadConfigBadValues checks that each kind of bad value gives one line
// naming the variable, the value and what is accepted.
func TestLoadConfigBadValues(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		kind, set, wantVar, wantText string
	}{
		{"number", "PODGATE_POOL_MIN=abc", "PODGATE_POOL_MIN", `PODGATE_POOL_MIN="abc": not a whole number (want e.g. 2)`},
		{"float", "PODGATE_KUBE_QPS=fast", "PODGATE_KUBE_QPS", `PODGATE_KUBE_QPS="fast": not a number (want e.g. 50)`},
		{"minimum", "PODGATE_MAX_AUTH_TRIES=0", "PODGATE_MAX_AUTH_TRIES", `PODGATE_MAX_AUTH_TRIES="0": must be at least 1`},
		{"duration", "PODGATE_IDLE_TIMEOUT=5", "PODGATE_IDLE_TIMEOUT", `not a duration (want a Go duration such as 30s, 5m or 1h30m)`},
		{"negative duration", "PODGATE_MAX_WAIT=-1s", "PODGATE_MAX_WAIT", `PODGATE_MAX_WAIT="-1s": must be at least 0s`},
		{"enum", "PODGATE_MODE=pods", "PODGATE_MODE", `PODGATE_MODE="pods": not one of connection, session`},
		{"log enum", "PODGATE_LOG_FORMAT=xml", "PODGATE_LOG_FORMAT", `not one of text, json`},
		{"bool", "PODGATE_PORT_FORWARDING=yes", "PODGATE_PORT_FORWARDING", `PODGATE_PORT_FORWARDING="yes": not a boolean (want true or false)`},
		{"path", "PODGATE_HOST_KEY_FILES=" + filepath.Join(dir, "nope"), "PODGATE_HOST_KEY_FILES", "no such file or directory"},
		{"path is dir", "PODGATE_KUBE_CA_FILE=" + dir, "PODGATE_KUBE_CA_FILE", "is a directory"},
		{"quantity", "PODGATE_POD_CPU_LIMIT=lots", "PODGATE_POD_CPU_LIMIT", "not a Kubernetes quantity"},
		{"hostport", "PODGATE_LISTEN=2222", "PODGATE_LISTEN", "not a host:port address"},
		{"dns label", "PODGATE_NAMESPACE=Guests", "PODGATE_NAMESPACE", "not a DNS label"},
		{"unknown", "PODGATE_POOLMIN=3", "PODGATE_POOLMIN", "unknown variable"},
		{"cross", "PODGATE_POOL_MIN=20", "PODGATE_POOL_MIN", "more than PODGATE_POOL_MAX (10)"},
		{"demo guard", "PODGATE_AUTH_MODE=demo\x00PODGATE_LISTEN=0.0.0.0:2222", "PODGATE_AUTH_MODE", "PODGATE_DEMO_INSECURE=true"},
		{"webhook url", "PODGATE_AUTH_MODE=webhook", "PODGATE_AUTH_WEBHOOK_URL", "not an http(s) URL"},
		{"env pattern", "PODGATE_ENV_ALLOW=LANG,A-B", "PODGATE_ENV_ALLOW", `"A-B" is not a variable name`},
		{"audit dir", "PODGATE_AUDIT_LOG=" + filepath.Join(dir, "no", "audit.log"), "PODGATE_AUDIT_LOG", "no such file or directory"},
		{"newline", "PODGATE_LOG_LEVEL=info\nerror", "PODGATE_LOG_LEVEL", `"info\nerror"`},
		{"pull policy", "PODGATE_IMAGE_PULL_POLICY=always", "PODGATE_IMAGE_PULL_POLICY", `not one of IfNotPresent, Always, Never`},
		{"pull secret name", "PODGATE_IMAGE_PULL_SECRETS=regcred,Bad_Name", "PODGATE_IMAGE_PULL_SECRETS", `"Bad_Name": not a Kubernetes object name`},
		{"forward rules", "PODGATE_PORT_FORWARDING=true\x00PODGATE_FORWARD_ALLOW=10.0.0.0/8:80,db.example", "PODGATE_FORWARD_ALLOW", `rule "db.example": no port`},
		{"forward rules unused", "PODGATE_FORWARD_ALLOW=10.0.0.0/8:80", "PODGATE_FORWARD_ALLOW", "has no effect while PODGATE_PORT_FORWARDING is false"},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			_, err := LoadConfig(append(validEnv(t), strings.Split(tt.set, "\x00")...))
			wantProblem(t, err, tt.wantVar, tt.wantText)
		})
	}
}

func TestLoadConfigDemoOnLoopback(t *testing.T) {
	if _, err := LoadConfig(append(validEnv(t), "PODGATE_AUTH_MODE=demo", "PODGATE_LISTEN=127.0.0.1:2222")); err != nil {
		t.Errorf("demo mode on loopback: %v", err)
	}
	if _, err := LoadConfig(append(validEnv(t), "PODGATE_AUTH_MODE=demo", "PODGATE_LISTEN=:2222", "PODGATE_DEMO_INSECURE=true")); err != nil {
		t.Errorf("demo mode insisted on every interface: %v", err)
	}
}

func TestLoadConfigMissingAuthorizedKeys(t *testing.T) {
	_, err := LoadConfig([]string{"PODGATE_AUTHORIZED_KEYS=/nonexistent/podgate/keys", "PODGATE_REPLICA_ID=r"})
	wantProblem(t, err, "PODGATE_AUTHORIZED_KEYS", "cannot be read in keys mode")
}

func TestLoadConfigSecretsAreNotEchoed(t *testing.T) {
	_, err := LoadConfig(append(validEnv(t), "PODGATE_KUBE_TOKEN=s3cret", "PODGATE_KUBE_TOKEN_FILE="+os.Args[0]))
	wantProblem(t, err, "PODGATE_KUBE_TOKEN_FILE", "set together with PODGATE_KUBE_TOKEN")
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error echoes the token: %v", err)
	}
}

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	_, err := LoadConfig(append(validEnv(t), "PODGATE_POOL_MIN=x", "PODGATE_POOL_MAX=y", "PODGATE_MODE=z"))
	var ce *ConfigError
	if !errors.As(err, &ce) || len(ce.Problems) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != 3 {
		t.Errorf("want one line per problem, got %q", err.Error())
	}
}

// wantProblem fails unless err holds a *VarError for variable name whose
// single-line message contains text.
func wantProblem(t *testing.T, err error, name, text string) {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("want a *ConfigError, got %v", err)
	}
	for _, p := range ce.Problems {
		var ve *VarError
		if errors.As(p, &ve) && ve.Var == name {
			msg := ve.Error()
			if !strings.Contains(msg, text) {
				t.Errorf("problem for %s = %q, want it to contain %q", name, msg, text)
			}
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, name) {
				t.Errorf("problem %q is not one line starting with the variable", msg)
			}
			return
		}
	}
	t.Errorf("no problem for %s in:\n%v", name, err)
}

// TestEveryFieldIsDescribed keeps the tags complete: each field has a
// variable name, a default (so RequiredIfNoDef only catches a forgotten one),
// and a description that is a full sentence.
func TestEveryFieldIsDescribed(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range configVars() {
		if v.Name == envPrefix || v.Name == "" {
			t.Errorf("%s has no env tag", v.Field)
		}
		if seen[v.Name] {
			t.Errorf("%s: variable %s used twice", v.Field, v.Name)
		}
		seen[v.Name] = true
		if !v.HasDefault {
			t.Errorf("%s (%s) has no envDefault", v.Field, v.Name)
		}
		if d := v.Desc; d == "" || !strings.HasSuffix(d, ".") || strings.ToUpper(d[:1]) != d[:1] {
			t.Errorf("%s (%s): desc %q is not a full sentence", v.Field, v.Name, d)
		}
		if v.Group == "" {
			t.Errorf("%s has no group", v.Field)
		}
	}
}

// TestVarsMatchParser checks that configVars computes the same keys that
// caarlos0/env reads, so docs and unknown-variable detection agree with the
// parser.
func TestVarsMatchParser(t *testing.T) {
	params, err := env.GetFieldParamsWithOptions(&Config{}, env.Options{Prefix: envPrefix})
	if err != nil {
		t.Fatal(err)
	}
	var fromParser, fromVars []string
	for _, p := range params {
		fromParser = append(fromParser, p.Key)
	}
	for _, v := range configVars() {
		fromVars = append(fromVars, v.parserKey())
	}
	if !reflect.DeepEqual(fromParser, fromVars) {
		t.Errorf("parser keys %v\n!= configVars keys %v", fromParser, fromVars)
	}
}

// TestEnumsMatchConstants ties the enum tags to the constants code compares
// against.
func TestEnumsMatchConstants(t *testing.T) {
	want := map[string][]string{
		"PODGATE_AUTH_MODE":  {string(AuthKeys), string(AuthWebhook), string(AuthCerts), string(AuthDemo)},
		"PODGATE_RECORD":     {string(scheduler.RecordOff), string(scheduler.RecordOutput), string(scheduler.RecordInput)},
		"PODGATE_MODE":       {string(scheduler.ModeConnection), string(scheduler.ModeSession)},
		"PODGATE_LOG_FORMAT": {string(LogText), string(LogJSON)},
	}
	for _, v := range configVars() {
		if w, ok := want[v.Name]; ok && !reflect.DeepEqual(v.Enum, w) {
			t.Errorf("%s enum = %v, want %v", v.Name, v.Enum, w)
		}
	}
	for _, name := range []string{"debug", "info", "warn", "error"} {
		if got := LogLevel(name).Level().String(); !strings.EqualFold(got, name) {
			t.Errorf("LogLevel(%q).Level() = %s", name, got)
		}
	}
}
