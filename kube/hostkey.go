package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// HostKeyDataKey is the key in the Secret's data that holds the PEM host key.
const HostKeyDataKey = "ssh-host-key"

// SecretKeyStore keeps the SSH host key in a Secret, so every replica, and
// every restart, presents the same host key to clients.
//
// Concurrency: replicas that start together race to create the Secret. The
// API server lets exactly one Create succeed; the others see AlreadyExists
// and adopt the winner's key (see LoadOrCreate), so all end with one key.
type SecretKeyStore struct {
	secrets   corev1client.SecretsGetter
	namespace string
	name      string
	log       *slog.Logger
}

// NewSecretKeyStore returns a store for the Secret namespace/name.
func NewSecretKeyStore(secrets corev1client.SecretsGetter, namespace, name string, log *slog.Logger) *SecretKeyStore {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SecretKeyStore{secrets: secrets, namespace: namespace, name: name, log: log}
}

// Load returns the stored PEM key. The error wraps fs.ErrNotExist when the
// Secret or its key is absent, so a caller can tell "generate one" from a
// real failure.
func (s *SecretKeyStore) Load(ctx context.Context) ([]byte, error) {
	secret, err := s.secrets.Secrets(s.namespace).Get(ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("loading host key from secret %s/%s: %w", s.namespace, s.name, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("loading host key from secret %s/%s: %w", s.namespace, s.name, err)
	}
	key := secret.Data[HostKeyDataKey]
	if len(key) == 0 {
		return nil, fmt.Errorf("loading host key from secret %s/%s: no %q key: %w", s.namespace, s.name, HostKeyDataKey, fs.ErrNotExist)
	}
	return key, nil
}

// Save stores pem as the host key if none is stored yet. It creates the
// Secret, or adds the key to an existing Secret that lacks one (with
// optimistic concurrency). When another writer got there first with a
// different key it returns an error wrapping fs.ErrExist; the caller must
// then Load and use the winner's key. Saving the key already stored
// succeeds.
func (s *SecretKeyStore) Save(ctx context.Context, pem []byte) error {
	if len(pem) == 0 {
		return fmt.Errorf("saving host key to secret %s/%s: empty key", s.namespace, s.name)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      s.name,
			Namespace: s.namespace,
			Labels:    map[string]string{"app.kubernetes.io/name": "podgate", "app.kubernetes.io/component": "host-key"},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{HostKeyDataKey: pem},
	}
	_, err := s.secrets.Secrets(s.namespace).Create(ctx, secret, metav1.CreateOptions{})
	if err == nil {
		s.log.Info("stored new SSH host key", "secret", s.namespace+"/"+s.name)
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("saving host key to secret %s/%s: %w", s.namespace, s.name, err)
	}
	existing, err := s.secrets.Secrets(s.namespace).Get(ctx, s.name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("saving host key to secret %s/%s: reading existing secret: %w", s.namespace, s.name, err)
	}
	if stored := existing.Data[HostKeyDataKey]; len(stored) > 0 {
		if bytes.Equal(stored, pem) {
			return nil
		}
		return fmt.Errorf("saving host key to secret %s/%s: another key is stored: %w", s.namespace, s.name, fs.ErrExist)
	}
	// The Secret exists without a key (created by an operator, say): add
	// ours. The update carries the resourceVersion we read, so a concurrent
	// writer makes exactly one of us fail with a conflict.
	existing = existing.DeepCopy()
	if existing.Data == nil {
		existing.Data = map[string][]byte{}
	}
	existing.Data[HostKeyDataKey] = pem
	_, err = s.secrets.Secrets(s.namespace).Update(ctx, existing, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return fmt.Errorf("saving host key to secret %s/%s: concurrent update: %w", s.namespace, s.name, fs.ErrExist)
	}
	if err != nil {
		return fmt.Errorf("saving host key to secret %s/%s: %w", s.namespace, s.name, err)
	}
	s.log.Info("stored new SSH host key in existing secret", "secret", s.namespace+"/"+s.name)
	return nil
}

// LoadOrCreate returns the stored key, or stores one from generate and
// returns it; when another replica stores its key first, it returns that
// one. generate is only called when no key is stored.
func (s *SecretKeyStore) LoadOrCreate(ctx context.Context, generate func() ([]byte, error)) ([]byte, error) {
	key, err := s.Load(ctx)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key, err = generate()
	if err != nil {
		return nil, fmt.Errorf("generating host key: %w", err)
	}
	err = s.Save(ctx, key)
	if errors.Is(err, fs.ErrExist) {
		s.log.Info("another replica stored the SSH host key first; using it", "secret", s.namespace+"/"+s.name)
		return s.Load(ctx)
	}
	if err != nil {
		return nil, err
	}
	return key, nil
}
