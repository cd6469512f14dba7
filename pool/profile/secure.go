package profile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// Loosening lists the secure defaults a profile explicitly gives up, each
// set by a podgate.io/allow-* annotation. The zero value is the safest.
type Loosening struct {
	// Root allows the template to run as root (no runAsNonRoot).
	Root bool
	// ServiceAccountToken keeps the template's automountServiceAccountToken.
	ServiceAccountToken bool
	// PrivilegeEscalation keeps the containers' allowPrivilegeEscalation.
	PrivilegeEscalation bool
	// Capabilities keeps the containers' capabilities instead of dropping ALL.
	Capabilities bool
}

// guestUID is the user the local images run as; it is used when a template
// that must not run as root names no user, so that runAsNonRoot can be
// verified by the kubelet even for images with a named USER.
const guestUID = 1000

// applySecureDefaults hardens a template in place: the pod and every
// container, sidecars and init containers included. Values a template sets
// explicitly win unless they are a loosening the profile did not ask for.
// session names the container sessions run in, which gets the startup
// probe.
// Containers get res's requests and limits for every resource they state
// nothing about, and fallbackDefaults' where res says nothing either, so
// that no guest container runs without a CPU and memory limit.
func applySecureDefaults(t *corev1.PodTemplateSpec, l Loosening, res corev1.ResourceRequirements, session string) {
	s := &t.Spec
	if !l.ServiceAccountToken || s.AutomountServiceAccountToken == nil {
		s.AutomountServiceAccountToken = ptr.To(l.ServiceAccountToken)
	}
	s.EnableServiceLinks = ptr.To(false)
	if s.TerminationGracePeriodSeconds == nil || *s.TerminationGracePeriodSeconds > 30 {
		s.TerminationGracePeriodSeconds = ptr.To[int64](2)
	}
	// A claimed pod must never come back after its process ends: the user
	// would find a fresh container where they left state behind.
	s.RestartPolicy = corev1.RestartPolicyNever
	if s.SecurityContext == nil {
		s.SecurityContext = &corev1.PodSecurityContext{}
	}
	psc := s.SecurityContext
	if !l.Root {
		psc.RunAsNonRoot = ptr.To(true)
		if psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			psc.RunAsUser = ptr.To[int64](guestUID)
		}
		if psc.RunAsGroup == nil || *psc.RunAsGroup == 0 {
			psc.RunAsGroup = ptr.To[int64](guestUID)
		}
	}
	if psc.SeccompProfile == nil {
		psc.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	}
	for i := range s.InitContainers {
		hardenContainer(&s.InitContainers[i], l, res)
	}
	for i := range s.Containers {
		hardenContainer(&s.Containers[i], l, res)
	}
	if c := containerNamed(s, session); c != nil && c.ReadinessProbe == nil && c.StartupProbe == nil {
		// Ready must mean "can run a command": a startup probe makes the
		// kubelet exec into the container once before reporting Ready.
		// It is a startup probe, not a readiness probe, because it stops
		// after its first success: a readiness probe would exec into
		// every idle pod every period for the pod's whole life.
		c.StartupProbe = &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}},
			PeriodSeconds:    1,
			TimeoutSeconds:   5,
			SuccessThreshold: 1,
			FailureThreshold: 120,
		}
	}
}

func containerNamed(s *corev1.PodSpec, name string) *corev1.Container {
	for i := range s.Containers {
		if s.Containers[i].Name == name {
			return &s.Containers[i]
		}
	}
	return nil
}

// hardenContainer applies the per-container part of the secure defaults.
func hardenContainer(c *corev1.Container, l Loosening, res corev1.ResourceRequirements) {
	if c.SecurityContext == nil {
		c.SecurityContext = &corev1.SecurityContext{}
	}
	sc := c.SecurityContext
	if !l.PrivilegeEscalation || sc.AllowPrivilegeEscalation == nil {
		sc.AllowPrivilegeEscalation = ptr.To(l.PrivilegeEscalation)
	}
	if !l.PrivilegeEscalation {
		sc.Privileged = nil
	}
	if !l.Capabilities {
		sc.Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}
	}
	if !l.Root {
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			sc.RunAsUser = nil
		}
		if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
			sc.RunAsNonRoot = nil
		}
	}
	if c.Resources.Requests == nil {
		c.Resources.Requests = corev1.ResourceList{}
	}
	if c.Resources.Limits == nil {
		c.Resources.Limits = corev1.ResourceList{}
	}
	fb := fallbackDefaults().Resources
	for _, from := range []corev1.ResourceRequirements{res, fb} {
		for n, q := range from.Requests {
			setIfAbsent(c.Resources.Requests, n, q)
		}
		for n, q := range from.Limits {
			setIfAbsent(c.Resources.Limits, n, q)
		}
	}
	// A request above a defaulted limit would make the pod invalid.
	for _, n := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[n], c.Resources.Limits[n]
		if req.Cmp(lim) > 0 {
			c.Resources.Limits[n] = req.DeepCopy()
		}
	}
}

func setIfAbsent(l corev1.ResourceList, n corev1.ResourceName, q resource.Quantity) {
	if _, ok := l[n]; !ok {
		l[n] = q.DeepCopy()
	}
}

// templateHash identifies a rendered template: any change to the spec
// (image included) or to its labels and annotations changes it.
func templateHash(t *corev1.PodTemplateSpec) (string, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("hashing pod template: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16], nil
}
