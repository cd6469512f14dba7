package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// isolate hides the machine's kubeconfig and in-cluster environment.
func isolate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("KUBECONFIG", filepath.Join(dir, "no-such-kubeconfig"))
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	return dir
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRESTConfigHostTokenCAWithoutKubeconfig(t *testing.T) {
	dir := isolate(t)
	tokenFile := writeFile(t, filepath.Join(dir, "token"), "secret-token")
	caFile := writeFile(t, filepath.Join(dir, "ca.crt"), "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
	cfg, err := RESTConfig(ClientConfig{Host: "https://10.0.0.1:6443", TokenFile: tokenFile, CAFile: caFile})
	if err != nil {
		t.Fatalf("RESTConfig: %v", err)
	}
	if cfg.Host != "https://10.0.0.1:6443" || cfg.BearerTokenFile != tokenFile || cfg.TLSClientConfig.CAFile != caFile {
		t.Errorf("host %q, token file %q, CA %q", cfg.Host, cfg.BearerTokenFile, cfg.TLSClientConfig.CAFile)
	}
	if cfg.QPS != DefaultQPS || cfg.Burst != DefaultBurst || cfg.RateLimiter == nil || cfg.UserAgent != DefaultUserAgent {
		t.Errorf("QPS %v, burst %d, limiter %v, user agent %q", cfg.QPS, cfg.Burst, cfg.RateLimiter, cfg.UserAgent)
	}
}

func TestRESTConfigKubeconfigWithOverrides(t *testing.T) {
	dir := isolate(t)
	kubeconfig := writeFile(t, filepath.Join(dir, "config"), `apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: "https://a.example:6443", insecure-skip-tls-verify: true}
- name: b
  cluster: {server: "https://b.example:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: from-kubeconfig}
contexts:
- name: a
  context: {cluster: a, user: u}
- name: b
  context: {cluster: b, user: u}
current-context: a
`)
	cfg, err := RESTConfig(ClientConfig{Kubeconfig: kubeconfig, Context: "b", QPS: 7, Burst: 9, UserAgent: "test"})
	if err != nil {
		t.Fatalf("RESTConfig: %v", err)
	}
	if cfg.Host != "https://b.example:6443" || cfg.BearerToken != "from-kubeconfig" {
		t.Errorf("context b: host %q, token %q", cfg.Host, cfg.BearerToken)
	}
	if cfg.QPS != 7 || cfg.Burst != 9 || cfg.UserAgent != "test" {
		t.Errorf("QPS %v, burst %d, user agent %q", cfg.QPS, cfg.Burst, cfg.UserAgent)
	}
	cfg, err = RESTConfig(ClientConfig{Kubeconfig: kubeconfig, Host: "https://override.example", Token: "override"})
	if err != nil {
		t.Fatalf("RESTConfig: %v", err)
	}
	if cfg.Host != "https://override.example" || cfg.BearerToken != "override" {
		t.Errorf("overrides: host %q, token %q", cfg.Host, cfg.BearerToken)
	}
}

func TestRESTConfigErrors(t *testing.T) {
	dir := isolate(t)
	for _, tc := range []struct {
		name string
		cfg  ClientConfig
		want string
	}{
		{"nothing configured", ClientConfig{}, "no cluster configured"},
		{"missing kubeconfig", ClientConfig{Kubeconfig: filepath.Join(dir, "missing")}, "missing"},
		{"missing CA file", ClientConfig{Host: "https://h", CAFile: filepath.Join(dir, "no-ca")}, "no-ca"},
		{"token and token file", ClientConfig{Host: "https://h", Token: "t", TokenFile: "f"}, "Token or TokenFile"},
		{"cert without key", ClientConfig{Host: "https://h", CertFile: "c"}, "CertFile and KeyFile"},
		{"insecure with CA", ClientConfig{Host: "https://h", CAFile: "ca", InsecureSkipTLSVerify: true}, "InsecureSkipTLSVerify"},
		{"negative QPS", ClientConfig{Host: "https://h", QPS: -1}, "QPS"},
		{"negative burst", ClientConfig{Host: "https://h", Burst: -1}, "burst"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RESTConfig(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("RESTConfig = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
