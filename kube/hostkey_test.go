package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/podgate/podgate/internal/testenv/kubetest"
)

func TestSecretKeyStoreMissing(t *testing.T) {
	cs := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "empty", Namespace: "ns"}})
	for _, name := range []string{"absent", "empty"} {
		store := NewSecretKeyStore(cs.CoreV1(), "ns", name, nil)
		if _, err := store.Load(context.Background()); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load of %s: %v, want fs.ErrNotExist", name, err)
		}
	}
}

func TestSecretKeyStoreSave(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "keyless", Namespace: "ns"}})
	for _, name := range []string{"new", "keyless"} {
		store := NewSecretKeyStore(cs.CoreV1(), "ns", name, nil)
		if err := store.Save(ctx, []byte("key-1")); err != nil {
			t.Fatalf("Save to %s: %v", name, err)
		}
		if got, err := store.Load(ctx); err != nil || string(got) != "key-1" {
			t.Errorf("Load of %s = %q, %v", name, got, err)
		}
		if err := store.Save(ctx, []byte("key-1")); err != nil {
			t.Errorf("saving the stored key again: %v", err)
		}
		if err := store.Save(ctx, []byte("key-2")); !errors.Is(err, fs.ErrExist) {
			t.Errorf("saving a different key: %v, want fs.ErrExist", err)
		}
	}
	if err := NewSecretKeyStore(cs.CoreV1(), "ns", "x", nil).Save(ctx, nil); err == nil {
		t.Error("saving an empty key succeeded")
	}
}

// TestSecretKeyStoreRace runs replicas that start together against the real
// API server: each generates its own key, and all must end with the same
// one.
func TestSecretKeyStoreRace(t *testing.T) {
	t.Parallel()
	env := kubetest.New(t)
	ctx := testContext(t)
	const replicas = 5
	keys := make([][]byte, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		store := NewSecretKeyStore(env.Client.CoreV1(), env.Namespace, "podgate-host-key", testLogger())
		wg.Go(func() {
			keys[i], errs[i] = store.LoadOrCreate(ctx, func() ([]byte, error) {
				return fmt.Appendf(nil, "key-of-replica-%d", i), nil
			})
		})
	}
	wg.Wait()
	for i := range replicas {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		if !bytes.Equal(keys[i], keys[0]) {
			t.Errorf("replica %d ended with %q, replica 0 with %q", i, keys[i], keys[0])
		}
	}
	stored, err := NewSecretKeyStore(env.Client.CoreV1(), env.Namespace, "podgate-host-key", nil).Load(ctx)
	if err != nil || !bytes.Equal(stored, keys[0]) {
		t.Errorf("stored key %q, %v; replicas use %q", stored, err, keys[0])
	}
}
