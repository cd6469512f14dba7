package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
	"k8s.io/utils/clock"

	"github.com/podgate/podgate/pool/profile"
	"github.com/podgate/podgate/sshfront"
	"github.com/podgate/podgate/sshfront/auth"
	"github.com/podgate/podgate/sshfront/recording"
)

// This file holds the settings of issue 17's login and session features:
// banner, message of the day, file-transfer-only default profile, user
// certificates and session recordings. checkLoginSettings validates them
// at start-up with the other cross-variable rules; the rest turns them
// into what wire hands to the components.

// checkLoginSettings reports, through bad, every login or recording
// setting that cannot work. Files are read and parsed here, so that a
// malformed banner, CA list or revocation list stops podgate at start-up
// with a line naming the variable.
func checkLoginSettings(c *Config, bad func(field any, problem, want string)) {
	if p := c.SSH.BannerFile; p != "" {
		if _, err := readMessage(p, false); err != nil {
			bad(&c.SSH.BannerFile, "malformed banner: "+err.Error(), "UTF-8 text, tab and newline the only control characters, at most 8 KiB")
		}
	}
	if p := c.Profile.MOTDFile; p != "" {
		if _, err := readMessage(p, true); err != nil {
			bad(&c.Profile.MOTDFile, "malformed message of the day: "+err.Error(), "UTF-8 text with {user} and {profile} the only placeholders, at most 8 KiB")
		}
	}
	if c.Profile.DisableCommand && c.Profile.SFTPPath == SFTPNone {
		bad(&c.Profile.DisableCommand, "leaves nothing to run: PODGATE_SFTP_PATH is none", "false, or an SFTP server path")
	}
	if p := c.Auth.UserCAKeys; p != "" {
		if _, err := readCAKeys(p); err != nil {
			bad(&c.Auth.UserCAKeys, "malformed CA key list: "+err.Error(), "OpenSSH public keys, one per line, as in TrustedUserCAKeys")
		}
	}
	if p := c.Auth.RevokedKeys; p != "" {
		if _, err := auth.NewRevocations(p, time.Now(), slog.New(slog.DiscardHandler)); err != nil {
			bad(&c.Auth.RevokedKeys, "malformed revocation list: "+err.Error(), "lines of serial:, id:, key: or hash: entries")
		}
	}
	if c.Auth.Mode == AuthDemo {
		if c.Auth.UserCAKeys != "" {
			bad(&c.Auth.UserCAKeys, "has no effect in demo mode, which accepts any key", "empty in demo mode")
		}
		if c.Auth.RevokedKeys != "" {
			bad(&c.Auth.RevokedKeys, "has no effect in demo mode, which accepts any key", "empty in demo mode")
		}
	}
	if c.Profile.Record.Enabled() && c.Record.Dir == "" {
		bad(&c.Profile.Record, "needs PODGATE_RECORD_DIR, which is not set", "off, or set PODGATE_RECORD_DIR")
	}
	if d := c.Record.Dir; d != "" {
		if err := recording.CheckDir(d); err != nil {
			bad(&c.Record.Dir, err.Error(), "an existing directory podgate can create files in")
		}
	}
	if n, ok := c.Record.MaxSize.AsInt64(); !ok || n < 4096 || n > profile.MaxRecordBytes {
		bad(&c.Record.MaxSize, "outside 4Ki..64Gi", "e.g. 100Mi")
	}
}

// readMessage reads a banner or message-of-the-day file and checks it.
func readMessage(path string, placeholders bool) (string, error) {
	data, err := readSmallFile(path, profile.MaxMessageLen)
	if err != nil {
		return "", err
	}
	text := profile.NormalizeMessage(string(data))
	if err := profile.CheckMessage(text, placeholders); err != nil {
		return "", err
	}
	return text, nil
}

// readCAKeys reads a TrustedUserCAKeys file.
func readCAKeys(path string) ([]ssh.PublicKey, error) {
	data, err := readSmallFile(path, 1<<20)
	if err != nil {
		return nil, err
	}
	return auth.ParseCAKeys(data)
}

// readSmallFile reads at most limit bytes of path, refusing a larger file.
func readSmallFile(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// requireRecordDir is the profile store's check that a recording profile
// has somewhere to record to.
func requireRecordDir(dir *recording.Dir) func(*profile.Profile) error {
	return func(p *profile.Profile) error {
		if p.Record.Enabled() && dir == nil {
			return fmt.Errorf("annotation %s=%s needs PODGATE_RECORD_DIR, which is not set", profile.AnnRecord, p.Record)
		}
		return nil
	}
}

// loginFiles are the banner and message of the day, read once at start-up
// (LoadConfig has checked them).
type loginFiles struct {
	banner, motd string
	caKeys       []ssh.PublicKey
	revoked      *auth.Revocations // nil when none is configured
}

func loadLogin(cfg Config, log *slog.Logger) (loginFiles, error) {
	var l loginFiles
	var err error
	if p := cfg.Auth.RevokedKeys; p != "" {
		if l.revoked, err = auth.NewRevocations(p, time.Now(), log); err != nil {
			return l, fmt.Errorf("PODGATE_REVOKED_KEYS: %w", err)
		}
	}
	if p := cfg.SSH.BannerFile; p != "" {
		if l.banner, err = readMessage(p, false); err != nil {
			return l, fmt.Errorf("PODGATE_BANNER_FILE: %w", err)
		}
	}
	if p := cfg.Profile.MOTDFile; p != "" {
		if l.motd, err = readMessage(p, true); err != nil {
			return l, fmt.Errorf("PODGATE_MOTD_FILE: %w", err)
		}
	}
	if p := cfg.Auth.UserCAKeys; p != "" {
		if l.caKeys, err = readCAKeys(p); err != nil {
			return l, fmt.Errorf("PODGATE_USER_CA_KEYS: %w", err)
		}
	}
	return l, nil
}

// certificates is the certificate authenticator: the global CAs, every
// profile's own CAs, and the revocation list. Demo mode has none, since it
// accepts any key.
func certificates(c AuthConfig, l loginFiles, store *profile.Store, clk clock.PassiveClock, log *slog.Logger) (*auth.CertAuthority, error) {
	if c.Mode == AuthDemo {
		return nil, nil
	}
	cfg := auth.CertConfig{CAKeys: l.caKeys, Profiles: store, Clock: clk, Revocations: l.revoked}
	ca, err := auth.NewCertAuthority(cfg, log)
	if err != nil {
		return nil, fmt.Errorf("PODGATE_USER_CA_KEYS: %w", err)
	}
	for _, k := range l.caKeys {
		log.Info("trusting user CA", "fingerprint", ssh.FingerprintSHA256(k))
	}
	return ca, nil
}

// withRevocations puts the revocation list in front of the plain-key
// authenticator, if there are both.
func withRevocations(authn sshfront.Authenticators, l loginFiles, clk clock.PassiveClock, log *slog.Logger) sshfront.Authenticators {
	if l.revoked != nil && authn.PublicKey != nil {
		authn.PublicKey = auth.RevokedKeysFilter{Next: authn.PublicKey, Revocations: l.revoked, Clock: clk, Log: log}
	}
	return authn
}
