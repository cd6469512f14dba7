package profile

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podgate/podgate/scheduler"
)

func template(ann map[string]string, spec corev1.PodSpec) *corev1.PodTemplate {
	return &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "web-tmpl", Labels: map[string]string{LabelProfile: "web"}, Annotations: ann},
		Template:   corev1.PodTemplateSpec{Spec: spec},
	}
}

func oneContainer() corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "localhost/podgate-debian:local"}}}
}

func TestFromPodTemplateAnnotations(t *testing.T) {
	p, err := fromTemplate(template(map[string]string{
		AnnPoolMin:          "2",
		AnnPoolMax:          "5",
		AnnMode:             "session",
		AnnShell:            `["/bin/bash","-l"]`,
		AnnExecWrapper:      `["/bin/bash","-c"]`,
		AnnSubsystems:       `{"sftp":["/usr/lib/openssh/sftp-server","-e"]}`,
		AnnIdleTimeout:      "15m",
		AnnMaxSession:       "8h",
		AnnMaxWait:          "45s",
		AnnPortForwarding:   "true",
		AnnAllowedUsers:     "alice, bob",
		AnnUserSelectable:   "false",
		AnnEnvAllow:         "LANG, TZ",
		AnnReconnectWindow:  "2m",
		AnnMaxPerUser:       "3",
		AnnMaxConnections:   "50",
		"example.com/other": "ignored",
	}, oneContainer()))
	if err != nil {
		t.Fatal(err)
	}
	want := scheduler.Policy{
		Name: "web", Mode: scheduler.ModeSession,
		Shell: []string{"/bin/bash", "-l"}, ExecWrapper: []string{"/bin/bash", "-c"},
		Subsystems:  map[string][]string{"sftp": {"/usr/lib/openssh/sftp-server", "-e"}},
		EnvAllow:    []string{"LANG", "TZ"},
		IdleTimeout: 15 * time.Minute, MaxSession: 8 * time.Hour, MaxWait: 45 * time.Second,
		PortForwarding: true, ReconnectWindow: 2 * time.Minute,
		MaxConnections: 50, MaxPerUser: 3,
		AllowedUsers: []string{"alice", "bob"}, UserSelectable: false,
	}
	if !reflect.DeepEqual(p.Policy, want) {
		t.Errorf("policy\n got %+v\nwant %+v", p.Policy, want)
	}
	if p.PoolMin != 2 || p.PoolMax != 5 || p.Container() != "main" || p.Hash == "" {
		t.Errorf("min %d max %d container %q hash %q", p.PoolMin, p.PoolMax, p.Container(), p.Hash)
	}
	if !p.Allows("alice") || p.Allows("mallory") {
		t.Error("allowed-users not applied")
	}
}

func TestFromPodTemplateDefaults(t *testing.T) {
	p, err := fromTemplate(template(nil, oneContainer()))
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != scheduler.ModeConnection || !reflect.DeepEqual(p.Shell, []string{"/bin/sh", "-l"}) ||
		!reflect.DeepEqual(p.ExecWrapper, []string{"/bin/sh", "-c"}) ||
		!reflect.DeepEqual(p.Subsystems, map[string][]string{"sftp": {"/usr/lib/openssh/sftp-server"}}) ||
		p.PortForwarding || !p.Allows("anyone") {
		t.Errorf("defaults not applied: %+v", p.Policy)
	}
}

func TestFromPodTemplateErrors(t *testing.T) {
	for _, tc := range []struct {
		key, val, want string
	}{
		{AnnPoolMin, "two", `"two" is not an integer`},
		{AnnPoolMax, "-1", "outside 0..10000"},
		{AnnPoolMax, "100000", "outside 0..10000"},
		{AnnMode, "pod", `"pod" is not`},
		{AnnShell, "/bin/sh -l", "JSON array"},
		{AnnShell, `[]`, "argv is empty"},
		{AnnShell, `[""]`, "argv[0] is empty"},
		{AnnExecWrapper, `["/bin/sh","a\u0000b"]`, "NUL"},
		{AnnSubsystems, `["sftp"]`, "JSON object"},
		{AnnSubsystems, `{"sftp":[]}`, `subsystem "sftp": argv is empty`},
		{AnnIdleTimeout, "ten minutes", "not a duration"},
		{AnnMaxWait, "-5s", "outside"},
		{AnnPortForwarding, "yes please", "invalid syntax"},
		{AnnAllowedUsers, " , ", "empty user list"},
		{AnnEnvAllow, "GOOD,1BAD", `"1BAD"`},
		{"podgate.io/pool-mni", "1", "unknown podgate annotation"},
		{AnnAllowRoot, "maybe", "invalid syntax"},
		{AnnEphemeralStorage, "lots", "not a quantity"},
		{AnnEphemeralStorage, "-1Gi", "negative"},
		{AnnHome, "home/user", "absolute directory path"},
		{AnnHome, "/", "absolute directory path"},
		{AnnReadOnlyRoot, "sure", "invalid syntax"},
	} {
		t.Run(tc.key+"="+tc.val, func(t *testing.T) {
			_, err := fromTemplate(template(map[string]string{tc.key: tc.val}, oneContainer()))
			var ae *AnnotationError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want an AnnotationError", err)
			}
			if ae.Key != tc.key || ae.Template != "web-tmpl" || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v (key %q), want key %q and %q", err, ae.Key, tc.key, tc.want)
			}
		})
	}
}

func TestFromPodTemplateInvalidTemplate(t *testing.T) {
	if _, err := fromTemplate(template(map[string]string{AnnPoolMin: "5", AnnPoolMax: "2"}, oneContainer())); err == nil || !strings.Contains(err.Error(), "exceeds pool max") {
		t.Errorf("min > max: %v", err)
	}
	if _, err := fromTemplate(template(nil, corev1.PodSpec{})); err == nil || !strings.Contains(err.Error(), "no containers") {
		t.Errorf("no containers: %v", err)
	}
	bad := template(nil, oneContainer())
	bad.Labels[LabelProfile] = "Not_A_Name"
	if _, err := fromTemplate(bad); err == nil {
		t.Error("invalid profile name accepted")
	}
}

func TestSecureDefaults(t *testing.T) {
	spec := oneContainer()
	spec.Containers[0].SecurityContext = &corev1.SecurityContext{
		Privileged:               ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(true),
		RunAsUser:                ptr.To[int64](0),
		Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}},
	}
	spec.AutomountServiceAccountToken = ptr.To(true)
	spec.RestartPolicy = corev1.RestartPolicyAlways
	spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}
	p, err := fromTemplate(template(nil, spec))
	if err != nil {
		t.Fatal(err)
	}
	s := p.Template.Spec
	c := s.Containers[0]
	switch {
	case *s.AutomountServiceAccountToken:
		t.Error("service account token mounted")
	case !*s.SecurityContext.RunAsNonRoot || *s.SecurityContext.RunAsUser != 1000 || *s.SecurityContext.RunAsGroup != 1000:
		t.Errorf("pod security context %+v", s.SecurityContext)
	case s.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("no RuntimeDefault seccomp")
	case *s.EnableServiceLinks || *s.TerminationGracePeriodSeconds != 2 || s.RestartPolicy != corev1.RestartPolicyNever:
		t.Errorf("pod spec %+v", s)
	case *c.SecurityContext.AllowPrivilegeEscalation || c.SecurityContext.Privileged != nil || c.SecurityContext.RunAsUser != nil:
		t.Errorf("container security context %+v", c.SecurityContext)
	case !reflect.DeepEqual(c.SecurityContext.Capabilities, &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}):
		t.Errorf("capabilities %+v", c.SecurityContext.Capabilities)
	case c.StartupProbe == nil || c.StartupProbe.Exec == nil || c.StartupProbe.PeriodSeconds != 1:
		t.Errorf("startup probe %+v", c.StartupProbe)
	}
	// The template's request wins and the defaulted limit grows to fit.
	if got := c.Resources.Requests[corev1.ResourceMemory]; got.String() != "1Gi" {
		t.Errorf("memory request %s", got.String())
	}
	if got := c.Resources.Limits[corev1.ResourceMemory]; got.String() != "1Gi" {
		t.Errorf("memory limit %s, want raised to the request", got.String())
	}
	if got := c.Resources.Requests[corev1.ResourceCPU]; got.String() != "50m" {
		t.Errorf("cpu request %s", got.String())
	}
}

func TestLoosening(t *testing.T) {
	spec := oneContainer()
	spec.AutomountServiceAccountToken = ptr.To(true)
	spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](0)}
	spec.Containers[0].SecurityContext = &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(true),
		Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}},
	}
	p, err := fromTemplate(template(map[string]string{
		AnnAllowRoot: "true", AnnAllowServiceAccountToken: "true",
		AnnAllowPrivilegeEscalation: "true", AnnAllowCapabilities: "true",
	}, spec))
	if err != nil {
		t.Fatal(err)
	}
	s := p.Template.Spec
	c := s.Containers[0].SecurityContext
	if !*s.AutomountServiceAccountToken || s.SecurityContext.RunAsNonRoot != nil || *s.SecurityContext.RunAsUser != 0 ||
		!*c.AllowPrivilegeEscalation || len(c.Capabilities.Add) != 1 {
		t.Errorf("loosening ignored: pod %+v container %+v", s.SecurityContext, c)
	}
}

func TestHashFollowsTemplate(t *testing.T) {
	a, _ := fromTemplate(template(nil, oneContainer()))
	b, _ := fromTemplate(template(map[string]string{AnnMaxWait: "1m"}, oneContainer()))
	spec := oneContainer()
	spec.Containers[0].Image = "localhost/podgate-busybox:local"
	c, _ := fromTemplate(template(nil, spec))
	if a.Hash != b.Hash {
		t.Error("a scheduling-only annotation changed the pod hash")
	}
	if a.Hash == c.Hash {
		t.Error("an image change kept the hash")
	}
}

// TestTemplateWithoutCommandStaysUp covers a template that names no
// command: the image's CMD (bash in the guest image) would exit at once
// without stdin and every pod would end as a crash, so the first container
// gets the idle command; a template with its own command or args keeps it.
func TestTemplateWithoutCommandStaysUp(t *testing.T) {
	p, err := fromTemplate(template(nil, oneContainer()))
	if err != nil {
		t.Fatal(err)
	}
	if c := p.Template.Spec.Containers[0]; !reflect.DeepEqual(c.Command, defaultIdleCommand) || len(c.Args) != 0 {
		t.Errorf("template without a command: command %q args %q, want the idle command", c.Command, c.Args)
	}
	withArgs := oneContainer()
	withArgs.Containers[0].Args = []string{"sleep", "infinity"}
	withCmd := oneContainer()
	withCmd.Containers[0].Command = []string{"/bin/sleep", "infinity"}
	for _, spec := range []corev1.PodSpec{withArgs, withCmd} {
		want := spec.Containers[0]
		p, err := fromTemplate(template(nil, spec))
		if err != nil {
			t.Fatal(err)
		}
		if c := p.Template.Spec.Containers[0]; !reflect.DeepEqual(c.Command, want.Command) || !reflect.DeepEqual(c.Args, want.Args) {
			t.Errorf("template's own command %q args %q became %q %q", want.Command, want.Args, c.Command, c.Args)
		}
	}
}

func TestFromConfig(t *testing.T) {
	if _, err := FromConfig(DefaultProfileConfig{}); err == nil {
		t.Error("no image accepted")
	}
	if _, err := FromConfig(DefaultProfileConfig{Image: "x", CPULimit: "lots"}); err == nil {
		t.Error("bad quantity accepted")
	}
	p, err := FromConfig(DefaultProfileConfig{
		Image: "localhost/podgate-debian:local", PoolMin: 2, Shell: []string{"/bin/bash", "-l"}, SFTPServer: "-",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := p.Template.Spec.Containers[0]
	if p.Name != DefaultName || p.PoolMax != 2 || len(p.Subsystems) != 0 || c.ImagePullPolicy != corev1.PullIfNotPresent ||
		!reflect.DeepEqual(c.Command, defaultIdleCommand) || p.Shell[0] != "/bin/bash" {
		t.Errorf("default profile %+v, container %+v", p, c)
	}
}

// FuzzFromPodTemplate checks that no annotation value makes the parser
// panic, and that whatever it accepts is a usable profile.
func FuzzFromPodTemplate(f *testing.F) {
	for _, s := range []string{"3", "session", `["/bin/sh","-l"]`, `{"sftp":["/x"]}`, "10m", "true", "a,b", "", "\x00", `{"":[""]}`, "0 9 * * 1-5=0", "CRON_TZ=x=1"} {
		f.Add(AnnPoolMin, s)
		f.Add(AnnSubsystems, s)
	}
	keys := []string{AnnPoolMin, AnnPoolMax, AnnMode, AnnShell, AnnExecWrapper, AnnSubsystems, AnnIdleTimeout,
		AnnMaxSession, AnnMaxWait, AnnPortForwarding, AnnAllowedUsers, AnnUserSelectable, AnnEnvAllow,
		AnnReconnectWindow, AnnMaxPerUser, AnnMaxConnections, AnnAllowRoot, AnnForwardAllow, AnnContainer, AnnPeaks}
	f.Fuzz(func(t *testing.T, key, val string) {
		for _, k := range append(keys, key) {
			p, err := fromTemplate(template(map[string]string{k: val}, oneContainer()))
			if err != nil {
				continue
			}
			if p.PoolMin > p.PoolMax || len(p.Shell) == 0 || len(p.ExecWrapper) == 0 || p.Hash == "" ||
				(p.Mode != scheduler.ModeConnection && p.Mode != scheduler.ModeSession) {
				t.Errorf("accepted %s=%q as an unusable profile %+v", k, val, p)
			}
		}
	})
}

// fromTemplate parses pt as a store with no default profile would.
func fromTemplate(pt *corev1.PodTemplate) (*Profile, error) {
	return FromPodTemplate(pt, fallbackDefaults())
}
