package sshfront

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestLoadHostKeysGeneratesOnceAndPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host_key")
	store := FileKeyStore{Path: path}
	if _, err := store.Load(context.Background()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty store: %v, want fs.ErrNotExist", err)
	}
	first, err := LoadHostKeys(context.Background(), nil, store, newLogger(nil))
	if err != nil || len(first) != 1 || first[0].PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Fatalf("first load: %v %v", first, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, err %v; want 0600", st.Mode(), err)
	}
	second, err := LoadHostKeys(context.Background(), nil, store, newLogger(nil))
	if err != nil || ssh.FingerprintSHA256(second[0].PublicKey()) != ssh.FingerprintSHA256(first[0].PublicKey()) {
		t.Fatalf("second load gave another key (err %v)", err)
	}
}

func TestLoadHostKeysFromFiles(t *testing.T) {
	dir := t.TempDir()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	files := map[string][]byte{
		"rsa":   pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}),
		"ecdsa": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}),
	}
	_, edPath := newTestKey(t, dir, "ed25519") // OpenSSH format
	paths := []string{edPath}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	signers, err := LoadHostKeys(context.Background(), paths, nil, newLogger(nil))
	if err != nil || len(signers) != 3 {
		t.Fatalf("LoadHostKeys: %d signers, %v", len(signers), err)
	}
	bad := filepath.Join(dir, "bad")
	_ = os.WriteFile(bad, []byte("not a key"), 0o600)
	if _, err := LoadHostKeys(context.Background(), []string{bad}, nil, newLogger(nil)); err == nil {
		t.Fatal("garbage host key accepted")
	}
}
