package kube

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// PullSecretInformers returns, for each name, an informer over the one
// Secret of that name and of type kubernetes.io/dockerconfigjson in
// namespace, and the factories that start them (one per name).
//
// Each lists and watches with a field selector on metadata.name, which RBAC
// authorizes by resourceNames, so podgate needs rights to these Secrets only;
// and each asks for metadata only, so podgate never receives the
// credentials. The type is selected too, because the kubelet ignores a pull
// secret of any other type.
func PullSecretInformers(cfg *rest.Config, namespace string, names []string) (map[string]cache.SharedIndexInformer, []metadatainformer.SharedInformerFactory, error) {
	if len(names) == 0 {
		return nil, nil, nil
	}
	client, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the metadata client for pull secrets: %w", err)
	}
	secrets := corev1.SchemeGroupVersion.WithResource("secrets")
	informers := make(map[string]cache.SharedIndexInformer, len(names))
	factories := make([]metadatainformer.SharedInformerFactory, 0, len(names))
	for _, name := range names {
		selector := fields.AndSelectors(
			fields.OneTermEqualSelector("metadata.name", name),
			fields.OneTermEqualSelector("type", string(corev1.SecretTypeDockerConfigJson)),
		).String()
		f := metadatainformer.NewFilteredSharedInformerFactory(client, 0, namespace, func(o *metav1.ListOptions) {
			o.FieldSelector = selector
		})
		informers[name] = f.ForResource(secrets).Informer()
		factories = append(factories, f)
	}
	return informers, factories, nil
}
