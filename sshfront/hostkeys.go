package sshfront

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// KeyStore persists the generated host key so that clients see the same key
// after a restart. Load returns an error wrapping fs.ErrNotExist when no key
// has been saved yet. The Kubernetes adapter implements it over a Secret.
type KeyStore interface {
	Load(ctx context.Context) ([]byte, error)
	Save(ctx context.Context, pem []byte) error
}

// LoadHostKeys reads host keys from files (PEM or OpenSSH format, any of
// ed25519, ECDSA and RSA). With no files it loads the key kept in store,
// generating and saving an ed25519 key the first time.
func LoadHostKeys(ctx context.Context, files []string, store KeyStore, log *slog.Logger) ([]ssh.Signer, error) {
	var signers []ssh.Signer
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading host key: %w", err)
		}
		s, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("parsing host key %q: %w", f, err)
		}
		signers = append(signers, s)
	}
	if len(signers) > 0 {
		return signers, nil
	}
	if store == nil {
		return nil, errors.New("no host key files and no key store configured")
	}
	data, err := store.Load(ctx)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		data, err = generateHostKey()
		if err != nil {
			return nil, err
		}
		if err := store.Save(ctx, data); err != nil {
			return nil, fmt.Errorf("saving generated host key: %w", err)
		}
		log.Info("generated a new ed25519 host key")
	case err != nil:
		return nil, fmt.Errorf("loading host key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("parsing stored host key: %w", err)
	}
	return []ssh.Signer{s}, nil
}

func generateHostKey() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "podgate host key")
	if err != nil {
		return nil, fmt.Errorf("encoding host key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// FileKeyStore keeps the host key in a file, written with mode 0600 through
// a temporary file and a rename so a crash never leaves half a key.
type FileKeyStore struct {
	Path string
}

var _ KeyStore = FileKeyStore{}

// Load reads the key file.
func (f FileKeyStore) Load(context.Context) ([]byte, error) {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, fmt.Errorf("reading host key file: %w", err)
	}
	return data, nil
}

// Save writes the key file atomically.
func (f FileKeyStore) Save(_ context.Context, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(f.Path), ".hostkey-*")
	if err != nil {
		return fmt.Errorf("creating temporary host key file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("restricting host key file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing host key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing host key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing host key file: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return fmt.Errorf("renaming host key file: %w", err)
	}
	return nil
}
