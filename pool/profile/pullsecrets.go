package profile

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// ErrPullSecretMissing marks a profile whose image pull secret does not
// exist. The kubelet itself only warns about a missing pull secret (an
// Event on the pod) and pulls without it, which fails later, or never
// while the image happens to be cached on the node; podgate refuses the
// profile at once instead, naming the secret.
var ErrPullSecretMissing = errors.New("image pull secret missing")

// WatchPullSecrets makes the store check that the default profile's image
// pull secrets exist. informers maps each secret's name to an informer
// that lists and watches that one Secret (see kube.PullSecretInformers),
// so that podgate needs no right to any other Secret. While a secret is
// missing the default profile is invalid, with an error naming it; its
// creation makes the profile valid again without a restart. A secret whose
// informer has not synced yet counts as present. Call it before Run.
//
// Secrets named by PodTemplate profiles are not checked: those behave as
// in any pod, as the kubelet decides.
func (s *Store) WatchPullSecrets(informers map[string]cache.SharedIndexInformer) error {
	s.secrets = informers
	for name, inf := range informers {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { s.rebuild() },
			DeleteFunc: func(any) { s.rebuild() },
		}); err != nil {
			return fmt.Errorf("watching image pull secret %q: %w", name, err)
		}
	}
	s.rebuild()
	return nil
}

// pullSecretsSynced reports whether every pull secret informer has synced.
func (s *Store) pullSecretsSynced() bool {
	for _, inf := range s.secrets {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// checkPullSecrets returns an error naming the first of p's pull secrets
// that a watched informer shows to be missing.
func (s *Store) checkPullSecrets(p *Profile) error {
	for _, ref := range p.Template.Spec.ImagePullSecrets {
		inf, watched := s.secrets[ref.Name]
		if !watched || !inf.HasSynced() || cached(inf, ref.Name) {
			continue
		}
		return fmt.Errorf("image pull secret %q (PODGATE_IMAGE_PULL_SECRETS): no Secret of that name and type %s in the guest namespace: %w",
			ref.Name, corev1.SecretTypeDockerConfigJson, ErrPullSecretMissing)
	}
	return nil
}

// cached reports whether inf's cache holds an object named name.
func cached(inf cache.SharedIndexInformer, name string) bool {
	for _, key := range inf.GetStore().ListKeys() {
		if _, n, err := cache.SplitMetaNamespaceKey(key); err == nil && n == name {
			return true
		}
	}
	return false
}

// pullSecretNames lists the watched secrets, for logs.
func (s *Store) pullSecretNames() []string {
	return slices.Sorted(maps.Keys(s.secrets))
}
