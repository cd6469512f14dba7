package profile

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// DefaultContainerAnnotation is kubectl's annotation naming a pod's default
// container (for kubectl exec, logs and attach). podgate reads it from a
// template as the session container when podgate.io/container is absent,
// and sets it on every pod, so that an operator's kubectl lands where users'
// sessions run.
const DefaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// sessionContainer resolves the container sessions run in, records it in
// p.container and in the template's default-container annotation, and
// returns it. It is the container podgate.io/container names (ContainerSSH's
// consoleContainerNumber, by name), else the one the template's
// default-container annotation names, else the first. Init containers,
// native sidecars among them, cannot be chosen.
func sessionContainer(p *Profile) (*corev1.Container, error) {
	cs := p.Template.Spec.Containers
	if len(cs) == 0 {
		return nil, fmt.Errorf("pod template has no containers")
	}
	// source prefixes errors about a name the template itself gave; a
	// name from podgate.io/container is reported under that annotation.
	name, source := p.container, ""
	fromKubectl := p.Template.Annotations[DefaultContainerAnnotation]
	switch {
	case name != "" && fromKubectl != "" && fromKubectl != name:
		return nil, fmt.Errorf("names container %q but the template's %s annotation names %q", name, DefaultContainerAnnotation, fromKubectl)
	case name == "" && fromKubectl != "":
		name, source = fromKubectl, "the template's "+DefaultContainerAnnotation+" annotation: "
	case name == "":
		name = cs[0].Name
	}
	var found *corev1.Container
	names := make([]string, len(cs))
	for i := range cs {
		names[i] = cs[i].Name
		if cs[i].Name == name {
			found = &cs[i]
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%sno container %q in the template (its containers: %s)", source, name, strings.Join(names, ", "))
	}
	p.container = name
	if p.Template.Annotations == nil {
		p.Template.Annotations = map[string]string{}
	}
	p.Template.Annotations[DefaultContainerAnnotation] = name
	return found, nil
}

// keepAlive gives the session container the default idle command when the
// template names neither a command nor arguments for it. Such a container
// would run the image's own CMD, which for a login image is typically a
// shell: with no terminal and no stdin it exits at once, the pod (restart
// policy Never) ends Succeeded, and the pool would classify every pod of
// the profile as crashing. A template that sets command or args keeps
// them: it means its entrypoint to stay up. Sidecars are left alone: they
// run their images' own entrypoints, as in any pod.
func keepAlive(c *corev1.Container) {
	if len(c.Command) == 0 && len(c.Args) == 0 {
		c.Command = append([]string(nil), defaultIdleCommand...)
	}
}
