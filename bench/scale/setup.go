package scale

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/podgate/podgate/internal/testenv/localcluster"
	"github.com/podgate/podgate/pool/profile"
)

// The namespaces deploy/base uses, which the benchmark renames.
const (
	baseNS      = "podgate"
	baseGuestNS = "podgate-guests"
)

// Namespaces are one run's stand-ins for podgate and podgate-guests.
type Namespaces struct{ Podgate, Guests string }

func newNamespaces() Namespaces {
	var b [3]byte
	_, _ = rand.Read(b[:])
	base := "bench-scale-" + hex.EncodeToString(b[:])
	return Namespaces{Podgate: base, Guests: base + "-guests"}
}

// deployFiles are the files of deploy/base that give podgate its identity
// and rights: the benchmark applies them as they are, renamed into its own
// namespaces.
var deployFiles = []string{"serviceaccount.yaml", "rbac.yaml"}

// createNamespaces makes the run's two namespaces, labelled as benchmark
// namespaces.
func createNamespaces(ctx context.Context, kube kubernetes.Interface, ns Namespaces) error {
	for _, name := range []string{ns.Podgate, ns.Guests} {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"podgate.io/bench": "true"}}}
		if _, err := kube.CoreV1().Namespaces().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating namespace %s: %w", name, err)
		}
	}
	return nil
}

// applyRBAC creates the ServiceAccounts, Roles and RoleBindings of
// deploy/base in ns.
func applyRBAC(ctx context.Context, kube kubernetes.Interface, deployDir string, ns Namespaces) error {
	rename := func(n string) string {
		switch n {
		case baseNS:
			return ns.Podgate
		case baseGuestNS:
			return ns.Guests
		}
		return n
	}
	for _, f := range deployFiles {
		objs, err := decodeFile(filepath.Join(deployDir, "base", f))
		if err != nil {
			return err
		}
		for _, o := range objs {
			if err := createRenamed(ctx, kube, o, rename); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
		}
	}
	return nil
}

// decodeFile reads every object of a multi-document YAML file.
func decodeFile(path string) ([]runtime.Object, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		o, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		out = append(out, o)
	}
}

// createRenamed creates one object of deploy/base in the renamed
// namespace, its subjects renamed too.
func createRenamed(ctx context.Context, kube kubernetes.Interface, o runtime.Object, rename func(string) string) error {
	var err error
	switch v := o.(type) {
	case *corev1.ServiceAccount:
		v.Namespace = rename(v.Namespace)
		_, err = kube.CoreV1().ServiceAccounts(v.Namespace).Create(ctx, v, metav1.CreateOptions{})
	case *rbacv1.Role:
		v.Namespace = rename(v.Namespace)
		_, err = kube.RbacV1().Roles(v.Namespace).Create(ctx, v, metav1.CreateOptions{})
	case *rbacv1.RoleBinding:
		v.Namespace = rename(v.Namespace)
		for i := range v.Subjects {
			v.Subjects[i].Namespace = rename(v.Subjects[i].Namespace)
		}
		_, err = kube.RbacV1().RoleBindings(v.Namespace).Create(ctx, v, metav1.CreateOptions{})
	default:
		return fmt.Errorf("unexpected %T", o)
	}
	return err
}

// tokenKubeconfig writes a kubeconfig that authenticates as podgate's
// ServiceAccount with a token from the TokenRequest API: podgate then
// meets RBAC and API Priority and Fairness as a deployed replica does,
// not as the exempt cluster admin.
func tokenKubeconfig(ctx context.Context, kube kubernetes.Interface, admin *rest.Config, ns Namespaces, path string) error {
	exp := int64(4 * 3600)
	tr, err := kube.CoreV1().ServiceAccounts(ns.Podgate).CreateToken(ctx, "podgate",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("requesting a token for podgate's ServiceAccount: %w", err)
	}
	ca := admin.CAData
	if len(ca) == 0 && admin.CAFile != "" {
		if ca, err = os.ReadFile(admin.CAFile); err != nil {
			return err
		}
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: bench
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: podgate
  user:
    token: %s
contexts:
- name: bench
  context: {cluster: bench, user: podgate}
current-context: bench
`, admin.Host, base64.StdEncoding.EncodeToString(ca), tr.Status.Token)
	return os.WriteFile(path, []byte(kc), 0o600)
}

// profileTemplate is the default profile as a PodTemplate: guest pods go
// to the fake nodes only, and the pool holds size idle pods. Its pod
// template never changes with the size, so resizing replaces no pod.
func profileTemplate(ns string, size int) *corev1.PodTemplate {
	return &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{
			Name: "default", Namespace: ns,
			Labels:      map[string]string{profile.LabelProfile: "default"},
			Annotations: sizeAnnotations(size),
		},
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			NodeSelector: map[string]string{localcluster.KWOKNodeLabel: localcluster.KWOKNodeLabelValue},
			Tolerations:  []corev1.Toleration{localcluster.KWOKToleration()},
			Containers:   []corev1.Container{{Name: "guest", Image: localcluster.DebianImage}},
		}},
	}
}

// sizeAnnotations pin the pool at size idle pods (the maximum is at
// least 1, as profiles require; with a minimum of 0 the pool is empty
// until a login misses).
func sizeAnnotations(size int) map[string]string {
	return map[string]string{profile.AnnPoolMin: strconv.Itoa(size), profile.AnnPoolMax: strconv.Itoa(max(size, 1))}
}

// resize sets the default profile's pool size.
func resize(ctx context.Context, kube kubernetes.Interface, ns string, size int) error {
	pts := kube.CoreV1().PodTemplates(ns)
	pt, err := pts.Get(ctx, "default", metav1.GetOptions{})
	if err != nil {
		_, err = pts.Create(ctx, profileTemplate(ns, size), metav1.CreateOptions{})
		return err
	}
	pt = pt.DeepCopy()
	for k, v := range sizeAnnotations(size) {
		pt.Annotations[k] = v
	}
	_, err = pts.Update(ctx, pt, metav1.UpdateOptions{})
	return err
}
