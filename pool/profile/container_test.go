package profile

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// twoContainers is a template with a sidecar first and the shell second,
// neither with a command, so that every default shows where it lands.
func twoContainers() corev1.PodSpec {
	return corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Image: "localhost/podgate-busybox:local", Command: []string{"true"}}},
		Containers: []corev1.Container{
			{Name: "proxy", Image: "localhost/podgate-busybox:local"},
			{Name: "shell", Image: "localhost/podgate-debian:local"},
		},
	}
}

// TestSessionContainerByName: the named container gets the idle command
// and the startup probe, every container and init container gets the
// secure defaults, the sidecar keeps its image's entrypoint, and pods say
// which container is the session's.
func TestSessionContainerByName(t *testing.T) {
	p, err := fromTemplate(template(map[string]string{AnnContainer: "shell"}, twoContainers()))
	if err != nil {
		t.Fatal(err)
	}
	if p.Container() != "shell" {
		t.Errorf("Container() = %q, want shell", p.Container())
	}
	spec := p.Template.Spec
	proxy, shell := spec.Containers[0], spec.Containers[1]
	if !reflect.DeepEqual(shell.Command, defaultIdleCommand) || shell.StartupProbe == nil {
		t.Errorf("session container: command %q, startup probe %v; want the idle command and a probe", shell.Command, shell.StartupProbe)
	}
	if len(proxy.Command) != 0 || proxy.StartupProbe != nil {
		t.Errorf("sidecar: command %q, startup probe %v; want neither", proxy.Command, proxy.StartupProbe)
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
			c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s not hardened: %+v, resources %+v", c.Name, sc, c.Resources)
		}
	}
	if got := p.Template.Annotations[DefaultContainerAnnotation]; got != "shell" {
		t.Errorf("%s = %q, want shell", DefaultContainerAnnotation, got)
	}
}

func TestSessionContainerDefaults(t *testing.T) {
	p, err := fromTemplate(template(nil, twoContainers()))
	if err != nil {
		t.Fatal(err)
	}
	if p.Container() != "proxy" {
		t.Errorf("without an annotation: Container() = %q, want the first, proxy", p.Container())
	}
	// An operator's kubectl default-container annotation is honoured.
	tmpl := template(nil, twoContainers())
	tmpl.Template.Annotations = map[string]string{DefaultContainerAnnotation: "shell"}
	if p, err = fromTemplate(tmpl); err != nil {
		t.Fatal(err)
	}
	if p.Container() != "shell" {
		t.Errorf("with %s: Container() = %q, want shell", DefaultContainerAnnotation, p.Container())
	}
	// The choice is part of the template: changing it replaces idle pods,
	// whose prepared streams run in the old container.
	other, err := fromTemplate(template(map[string]string{AnnContainer: "proxy"}, twoContainers()))
	if err != nil {
		t.Fatal(err)
	}
	if other.Hash == p.Hash {
		t.Error("choosing another container kept the template hash")
	}
}

func TestSessionContainerErrors(t *testing.T) {
	_, err := fromTemplate(template(map[string]string{AnnContainer: "shel"}, twoContainers()))
	var ae *AnnotationError
	if !errors.As(err, &ae) || ae.Key != AnnContainer || !strings.Contains(err.Error(), `no container "shel" in the template (its containers: proxy, shell)`) {
		t.Errorf("unknown container: %v", err)
	}
	if _, err := fromTemplate(template(map[string]string{AnnContainer: "init"}, twoContainers())); err == nil {
		t.Error("an init container was accepted as the session container")
	}
	tmpl := template(map[string]string{AnnContainer: "shell"}, twoContainers())
	tmpl.Template.Annotations = map[string]string{DefaultContainerAnnotation: "proxy"}
	if _, err := fromTemplate(tmpl); err == nil || !strings.Contains(err.Error(), DefaultContainerAnnotation) {
		t.Errorf("conflicting annotations: %v", err)
	}
	tmpl = template(nil, twoContainers())
	tmpl.Template.Annotations = map[string]string{DefaultContainerAnnotation: "gone"}
	if _, err := fromTemplate(tmpl); err == nil || !strings.Contains(err.Error(), `template's kubectl.kubernetes.io/default-container annotation: no container "gone"`) {
		t.Errorf("default-container naming no container: %v", err)
	}
}
