package auth

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// maxWebhookResponse caps how much of a webhook reply is read.
const maxWebhookResponse = 64 << 10

// WebhookConfig configures a Webhook.
type WebhookConfig struct {
	// URL is the base URL; requests go to URL/password and URL/pubkey.
	URL string
	// Timeout bounds one authentication check, retries included.
	// Zero means 5 s.
	Timeout time.Duration
	// Retries is how many times a 5xx reply or a transport error is
	// retried. Zero means 2; a negative value disables retries.
	Retries int
	// Backoff is the wait before the first retry; it doubles after each.
	// Zero means 200 ms.
	Backoff time.Duration
	// CAFile, if set, is a PEM bundle that replaces the system roots.
	CAFile string
	// CertFile and KeyFile, if set, are the client certificate and key
	// presented to the webhook.
	CertFile, KeyFile string
}

// Webhook checks credentials with an HTTP service speaking ContainerSSH's
// authentication protocol: a JSON POST to /password or /pubkey answered by
// {"success": bool}. podgate also reads two optional reply fields:
// "authenticatedUsername" (the canonical user) and "profile" (which wins
// over a "+profile" in the login name). Redirects are not followed, so a
// password is never re-posted to another host.
type Webhook struct {
	cfg      WebhookConfig
	password string // endpoint URLs
	pubkey   string
	client   *http.Client
	log      *slog.Logger
}

// webhookRequest is the ContainerSSH request body; Profile is podgate's
// addition (the profile asked for in the login name).
type webhookRequest struct {
	Username       string `json:"username"`
	RemoteAddress  string `json:"remoteAddress"`
	ConnectionID   string `json:"connectionId"`
	ClientVersion  string `json:"clientVersion,omitempty"`
	PasswordBase64 string `json:"passwordBase64,omitempty"`
	PublicKey      string `json:"publicKey,omitempty"`
	Profile        string `json:"profile,omitempty"`
}

type webhookResponse struct {
	Success               bool   `json:"success"`
	AuthenticatedUsername string `json:"authenticatedUsername"`
	Profile               string `json:"profile"`
}

// NewWebhook validates cfg and builds the HTTP client.
func NewWebhook(cfg WebhookConfig, log *slog.Logger) (*Webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook URL %q must be an absolute http or https URL", cfg.URL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Retries == 0 {
		cfg.Retries = 2
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 200 * time.Millisecond
	}
	tlsConf, err := webhookTLS(cfg)
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConf
	return &Webhook{
		cfg:      cfg,
		password: u.JoinPath("password").String(),
		pubkey:   u.JoinPath("pubkey").String(),
		client: &http.Client{
			Transport: transport,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		log: log,
	}, nil
}

func webhookTLS(cfg WebhookConfig) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading webhook CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("webhook CA file %q holds no PEM certificate", cfg.CAFile)
		}
		conf.RootCAs = pool
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("webhook client certificate and key must be set together")
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading webhook client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// Password asks the webhook's /password endpoint.
func (w *Webhook) Password(ctx context.Context, req Request, password []byte) (Decision, error) {
	body := w.body(req)
	body.PasswordBase64 = base64.StdEncoding.EncodeToString(password)
	return w.call(ctx, w.password, body, req)
}

// PublicKey asks the webhook's /pubkey endpoint, sending the key in
// authorized_keys format.
func (w *Webhook) PublicKey(ctx context.Context, req Request, key ssh.PublicKey) (Decision, error) {
	body := w.body(req)
	body.PublicKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	return w.call(ctx, w.pubkey, body, req)
}

func (w *Webhook) body(req Request) webhookRequest {
	return webhookRequest{
		Username:      req.User,
		RemoteAddress: req.RemoteAddr,
		ConnectionID:  req.ConnID,
		ClientVersion: req.ClientVersion,
		Profile:       req.Profile,
	}
}

// call posts body, retrying transport errors and 5xx replies with
// exponential backoff until the retries or the timeout run out.
func (w *Webhook) call(ctx context.Context, endpoint string, body webhookRequest, req Request) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	payload, err := json.Marshal(body)
	if err != nil {
		return Decision{}, fmt.Errorf("encoding webhook request: %w", err)
	}
	backoff := w.cfg.Backoff
	for attempt := 0; ; attempt++ {
		data, retry, err := w.post(ctx, endpoint, payload)
		if err == nil {
			return ParseWebhookResponse(data, req)
		}
		if !retry || attempt >= w.cfg.Retries {
			return Decision{}, err
		}
		w.log.Warn("auth webhook failed, retrying", "endpoint", endpoint, "attempt", attempt+1, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return Decision{}, fmt.Errorf("calling auth webhook: %w (after %v)", ctx.Err(), err)
		case <-t.C:
		}
		backoff *= 2
	}
}

// post makes one request; retry says whether a failure is worth retrying.
func (w *Webhook) post(ctx context.Context, endpoint string, payload []byte) (data []byte, retry bool, err error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(payload))
	if err != nil {
		return nil, false, fmt.Errorf("building webhook request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	resp, err := w.client.Do(hreq)
	if err != nil {
		return nil, ctx.Err() == nil, fmt.Errorf("calling auth webhook: %w", err)
	}
	defer resp.Body.Close()
	data, err = io.ReadAll(io.LimitReader(resp.Body, maxWebhookResponse+1))
	if err != nil {
		return nil, true, fmt.Errorf("reading auth webhook reply: %w", err)
	}
	switch {
	case resp.StatusCode >= 500:
		return nil, true, fmt.Errorf("auth webhook replied %s", resp.Status)
	case resp.StatusCode != http.StatusOK:
		return nil, false, fmt.Errorf("auth webhook replied %s", resp.Status)
	case len(data) > maxWebhookResponse:
		return nil, false, fmt.Errorf("auth webhook reply larger than %d bytes", maxWebhookResponse)
	}
	return data, false, nil
}

// ParseWebhookResponse turns a webhook reply into a decision for req. A
// reply naming an invalid user or profile is an error, not a success: the
// webhook is trusted, but not to bypass name validation.
func ParseWebhookResponse(data []byte, req Request) (Decision, error) {
	var r webhookResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return Decision{}, fmt.Errorf("decoding auth webhook reply: %w", err)
	}
	if !r.Success {
		return Decision{}, ErrDenied
	}
	d := Decision{User: req.User, Profile: req.Profile}
	if r.AuthenticatedUsername != "" {
		if !ValidName(r.AuthenticatedUsername) {
			return Decision{}, errors.New("auth webhook returned an invalid authenticatedUsername")
		}
		d.User = r.AuthenticatedUsername
	}
	if r.Profile != "" {
		if !ValidName(r.Profile) {
			return Decision{}, errors.New("auth webhook returned an invalid profile")
		}
		d.Profile = r.Profile
		d.Assigned = true
	}
	return d, nil
}
