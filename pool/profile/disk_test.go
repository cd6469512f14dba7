package profile

import (
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podgate/podgate/scheduler"
)

// configDefaults are the operator's settings the template tests inherit.
func configDefaults() DefaultProfileConfig {
	return DefaultProfileConfig{
		Image: "localhost/podgate-debian:local", IdleTimeout: 7 * time.Minute, MaxSession: 3 * time.Hour,
		MaxWait: 0, MaxPerUser: 2, EnvAllow: []string{"LANG", "LC_*"},
		CPURequest: "100m", MemRequest: "128Mi", CPULimit: "1", MemLimit: "512Mi", EphemeralLimit: "256Mi",
		Home: "/home/user", ReadOnlyRoot: true,
	}
}

// TestTemplateInheritsDefaults: a PodTemplate profile that says nothing
// gets the operator's limits and resources, not built-in ones; an
// annotation wins, including a 0s that means "never".
func TestTemplateInheritsDefaults(t *testing.T) {
	def, err := FromConfig(configDefaults())
	if err != nil {
		t.Fatal(err)
	}
	p, err := FromPodTemplate(template(nil, oneContainer()), def.Defaults)
	if err != nil {
		t.Fatal(err)
	}
	if p.IdleTimeout != 7*time.Minute || p.MaxSession != 3*time.Hour || p.MaxWait != 0 || p.MaxPerUser != 2 ||
		!reflect.DeepEqual(p.EnvAllow, []string{"LANG", "LC_*"}) {
		t.Errorf("template policy did not inherit the defaults: %+v", p.Policy)
	}
	res := p.Template.Spec.Containers[0].Resources
	for _, c := range []struct {
		list corev1.ResourceList
		name corev1.ResourceName
		want string
	}{
		{res.Requests, corev1.ResourceCPU, "100m"}, {res.Requests, corev1.ResourceMemory, "128Mi"},
		{res.Limits, corev1.ResourceCPU, "1"}, {res.Limits, corev1.ResourceMemory, "512Mi"},
		{res.Limits, corev1.ResourceEphemeralStorage, "256Mi"},
	} {
		if q := c.list[c.name]; q.Cmp(resource.MustParse(c.want)) != 0 {
			t.Errorf("%s = %s, want %s (PODGATE_POD_*)", c.name, q.String(), c.want)
		}
	}
	if got := emptyDirs(p); !reflect.DeepEqual(got, map[string]string{"/tmp": "256Mi"}) {
		t.Errorf("template emptyDirs %v, want only /tmp sized to the disk limit (no home, root writable)", got)
	}

	over, err := FromPodTemplate(template(map[string]string{
		AnnIdleTimeout: "0s", AnnMaxWait: "30s", AnnMaxPerUser: "0", AnnEnvAllow: "TZ",
		AnnEphemeralStorage: "2Gi", AnnHome: "/root/../home/dev", AnnReadOnlyRoot: "true",
	}, oneContainer()), def.Defaults)
	if err != nil {
		t.Fatal(err)
	}
	if over.IdleTimeout != 0 || over.MaxSession != 3*time.Hour || over.MaxWait != 30*time.Second || over.MaxPerUser != 0 ||
		!reflect.DeepEqual(over.EnvAllow, []string{"TZ"}) {
		t.Errorf("annotations did not override the defaults: %+v", over.Policy)
	}
	want := map[string]string{"/tmp": "2Gi", "/var/tmp": "2Gi", "/home/dev": "2Gi"}
	if got := emptyDirs(over); !reflect.DeepEqual(got, want) {
		t.Errorf("emptyDirs %v, want %v", got, want)
	}
	if ro := over.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem; ro == nil || !*ro {
		t.Error("podgate.io/read-only-root-filesystem ignored")
	}
}

// TestDefaultProfileDisk: the default profile's guest has a read-only root,
// writable home, /tmp and /var/tmp sized to the ephemeral-storage limit,
// and that limit on the container.
func TestDefaultProfileDisk(t *testing.T) {
	p, err := FromConfig(configDefaults())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"/tmp": "256Mi", "/var/tmp": "256Mi", "/home/user": "256Mi"}
	if got := emptyDirs(p); !reflect.DeepEqual(got, want) {
		t.Errorf("emptyDirs %v, want %v", got, want)
	}
	c := p.Template.Spec.Containers[0]
	if ro := c.SecurityContext.ReadOnlyRootFilesystem; ro == nil || !*ro {
		t.Error("default profile root is writable")
	}
	if q := c.Resources.Limits[corev1.ResourceEphemeralStorage]; q.Cmp(resource.MustParse("256Mi")) != 0 {
		t.Errorf("ephemeral-storage limit %s, want 256Mi", q.String())
	}
	// A template mounting its own /tmp keeps it.
	spec := oneContainer()
	spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/tmp/"}}
	own, err := FromPodTemplate(template(nil, spec), p.Defaults)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(own.Template.Spec.Volumes); n != 1 {
		t.Errorf("template's own /tmp got another volume: %d volumes", n)
	}
}

// TestZeroMeansZero: a 0s wait, idle timeout or session length from the
// configuration stays 0 in the profile (refuse at once, never, no limit)
// rather than turning into some other default on the way.
func TestZeroMeansZero(t *testing.T) {
	p, err := FromConfig(DefaultProfileConfig{Image: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if p.MaxWait != 0 || p.IdleTimeout != 0 || p.MaxSession != 0 {
		t.Errorf("zero durations became %v / %v / %v", p.MaxWait, p.IdleTimeout, p.MaxSession)
	}
	if p.Mode != scheduler.ModeConnection {
		t.Errorf("mode %q", p.Mode)
	}
}

// emptyDirs maps each emptyDir mount of the first container to its size.
func emptyDirs(p *Profile) map[string]string {
	sizes := map[string]string{}
	for _, v := range p.Template.Spec.Volumes {
		if v.EmptyDir != nil && v.EmptyDir.SizeLimit != nil {
			sizes[v.Name] = v.EmptyDir.SizeLimit.String()
		}
	}
	out := map[string]string{}
	for _, m := range p.Template.Spec.Containers[0].VolumeMounts {
		if s, ok := sizes[m.Name]; ok {
			out[m.MountPath] = s
		}
	}
	return out
}
