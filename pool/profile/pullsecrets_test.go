package profile

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// TestMissingPullSecret: the default profile is invalid, naming the secret
// and the setting, while its pull secret does not exist, and becomes valid
// once it is created and invalid again when it is deleted.
func TestMissingPullSecret(t *testing.T) {
	def, err := FromConfig(DefaultProfileConfig{Image: "registry.example/guest:1", ImagePullSecrets: []string{"regcred"}})
	if err != nil {
		t.Fatal(err)
	}
	cs := fake.NewClientset()
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace("guests"))
	store, err := NewStore(def, f.Core().V1().PodTemplates().Informer(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	secrets := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace("guests"))
	if err := store.WatchPullSecrets(map[string]cache.SharedIndexInformer{"regcred": secrets.Core().V1().Secrets().Informer()}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f.Start(ctx.Done())
	secrets.Start(ctx.Done())
	go func() { _ = store.Run(ctx) }()

	// wait returns once the default entry is valid (or not), following the
	// store's change notifications.
	wait := func(valid bool) Entry {
		t.Helper()
		for {
			changed := store.Changed()
			e, _ := store.Get("")
			if (e.Profile != nil) == valid && store.pullSecretsSynced() {
				return e
			}
			select {
			case <-changed:
			case <-ctx.Done():
				t.Fatalf("default profile never became valid=%v: %+v", valid, e)
			}
		}
	}
	e := wait(false)
	if !errors.Is(e.Err, ErrPullSecretMissing) || !containsAll(e.Err.Error(), `"regcred"`, "PODGATE_IMAGE_PULL_SECRETS", "kubernetes.io/dockerconfigjson") {
		t.Errorf("missing secret: %v", e.Err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: "guests"}, Type: corev1.SecretTypeDockerConfigJson}
	if _, err := cs.CoreV1().Secrets("guests").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait(true)
	if err := cs.CoreV1().Secrets("guests").Delete(ctx, "regcred", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	wait(false)
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
