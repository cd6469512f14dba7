package profile

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestPullSettingsReachPodSpec: the default profile's pull policy and
// secrets end up in the pod template pods are made from.
func TestPullSettingsReachPodSpec(t *testing.T) {
	p, err := FromConfig(DefaultProfileConfig{
		Image: "registry.example/guest:1", ImagePullPolicy: corev1.PullAlways,
		ImagePullSecrets: []string{"regcred", "mirror-cred"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Template.Spec.Containers[0].ImagePullPolicy; got != corev1.PullAlways {
		t.Errorf("pull policy %q, want Always", got)
	}
	want := []corev1.LocalObjectReference{{Name: "regcred"}, {Name: "mirror-cred"}}
	if got := p.Template.Spec.ImagePullSecrets; !reflect.DeepEqual(got, want) {
		t.Errorf("pull secrets %v, want %v", got, want)
	}
	plain, err := FromConfig(DefaultProfileConfig{Image: "registry.example/guest:1"})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Hash == p.Hash {
		t.Error("pull settings did not change the template hash")
	}
	if len(plain.Template.Spec.ImagePullSecrets) != 0 || plain.Template.Spec.Containers[0].ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("defaults: %+v", plain.Template.Spec)
	}
}

func TestForwardAllowSetting(t *testing.T) {
	p, err := fromTemplate(template(map[string]string{
		AnnPortForwarding: "true", AnnForwardAllow: "10.96.0.0/12:80, *.svc.cluster.local:*",
	}, oneContainer()))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.ForwardAllow.String(); got != "10.96.0.0/12:80,*.svc.cluster.local:*" {
		t.Errorf("forward-allow parsed as %q", got)
	}
	for _, tc := range []struct {
		ann  map[string]string
		want string
	}{
		{map[string]string{AnnPortForwarding: "true", AnnForwardAllow: "10.0.0.0/8"}, `rule "10.0.0.0/8": no port`},
		{map[string]string{AnnForwardAllow: "10.0.0.0/8:80"}, "has no effect unless podgate.io/port-forwarding is true"},
	} {
		_, err := fromTemplate(template(tc.ann, oneContainer()))
		var ae *AnnotationError
		if !errors.As(err, &ae) || ae.Key != AnnForwardAllow || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error on %s containing %q", tc.ann, err, AnnForwardAllow, tc.want)
		}
	}
	p, err = FromConfig(DefaultProfileConfig{Image: "x", PortForwarding: true, ForwardAllow: "web.demo:8080"})
	if err != nil || p.ForwardAllow.String() != "web.demo:8080" {
		t.Errorf("default profile: %v, rules %q", err, p.ForwardAllow)
	}
	if _, err := FromConfig(DefaultProfileConfig{Image: "x", ForwardAllow: "web.demo:8080"}); err == nil {
		t.Error("default profile: rules without port forwarding accepted")
	}
	if _, err := FromConfig(DefaultProfileConfig{Image: "x", PortForwarding: true, ForwardAllow: "web.demo"}); err == nil {
		t.Error("default profile: malformed rules accepted")
	}
}
