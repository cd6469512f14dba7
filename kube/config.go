package kube

import (
	"errors"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/flowcontrol"
)

// Defaults for ClientConfig fields left zero. client-go's own defaults (5
// QPS, burst 10) would make a burst of SSH logins queue behind the client's
// rate limiter rather than the API server.
const (
	DefaultQPS       = 50
	DefaultBurst     = 100
	DefaultUserAgent = "podgate"
)

// ClientConfig says how to reach the API server. Every field is optional:
// with none set, client-go's standard loading applies (KUBECONFIG or
// ~/.kube/config, else the in-cluster service account). Fields that are set
// override what was loaded, so Host, Token (or TokenFile) and CAFile alone
// are enough to connect without any kubeconfig. cmd fills it from the
// environment.
type ClientConfig struct {
	// Kubeconfig is an explicit kubeconfig path; it must exist.
	Kubeconfig string
	// Context selects a kubeconfig context other than the current one.
	Context string
	// Host is the API server URL, e.g. https://10.0.0.1:6443.
	Host string
	// Token and TokenFile are a bearer token, or a file holding one that is
	// re-read as it rotates. At most one may be set.
	Token     string
	TokenFile string
	// CAFile is the PEM bundle that verifies the API server.
	CAFile string
	// CertFile and KeyFile are a client certificate and its key; both or
	// neither.
	CertFile string
	KeyFile  string
	// InsecureSkipTLSVerify disables server verification; it cannot be
	// combined with CAFile.
	InsecureSkipTLSVerify bool
	// QPS and Burst configure the client-side rate limiter; zero means
	// DefaultQPS and DefaultBurst.
	QPS   float32
	Burst int
	// UserAgent is sent with every request; empty means DefaultUserAgent.
	UserAgent string
}

// RESTConfig builds the process's one *rest.Config from c. It also sets the
// config's RateLimiter explicitly: clients built from a config without one
// each get a private limiter, so setting it here is what makes every
// clientset, informer and executor cmd builds from this config share one
// QPS budget. cmd must therefore call RESTConfig once and pass the result
// everywhere.
func RESTConfig(c ClientConfig) (*rest.Config, error) {
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("client config: %w", err)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if c.Kubeconfig != "" {
		rules.ExplicitPath = c.Kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{
		CurrentContext: c.Context,
		ClusterInfo: clientcmdapi.Cluster{
			Server:                c.Host,
			CertificateAuthority:  c.CAFile,
			InsecureSkipTLSVerify: c.InsecureSkipTLSVerify,
		},
		AuthInfo: clientcmdapi.AuthInfo{
			Token:             c.Token,
			TokenFile:         c.TokenFile,
			ClientCertificate: c.CertFile,
			ClientKey:         c.KeyFile,
		},
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		return nil, fmt.Errorf("client config: no cluster configured: set a kubeconfig (KUBECONFIG), run in a pod with a service account, or set the API server host: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("client config: %w", err)
	}
	cfg.QPS, cfg.Burst = c.QPS, c.Burst
	if cfg.QPS == 0 {
		cfg.QPS = DefaultQPS
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultBurst
	}
	cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	cfg.UserAgent = c.UserAgent
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	return cfg, nil
}

// validate catches contradictions clientcmd would accept silently or
// report obscurely.
func (c ClientConfig) validate() error {
	var errs []error
	if c.Token != "" && c.TokenFile != "" {
		errs = append(errs, errors.New("set Token or TokenFile, not both"))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("CertFile and KeyFile must be set together"))
	}
	if c.InsecureSkipTLSVerify && c.CAFile != "" {
		errs = append(errs, errors.New("InsecureSkipTLSVerify cannot be combined with CAFile"))
	}
	if c.QPS < 0 {
		errs = append(errs, fmt.Errorf("QPS must not be negative, got %v", c.QPS))
	}
	if c.Burst < 0 {
		errs = append(errs, fmt.Errorf("burst must not be negative, got %d", c.Burst))
	}
	return errors.Join(errs...)
}
