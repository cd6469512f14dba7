// Package profile turns operator input into pod profiles: the default
// profile from plain configuration values, and Kubernetes-native profiles from
// PodTemplate objects labelled podgate.io/profile=NAME with podgate settings in
// annotations. Every rendered pod gets secure defaults unless the profile
// explicitly loosens them, and a template hash so that stale idle pods can be
// recognised and replaced.
package profile

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgate/podgate/scheduler"
)

// DefaultName is the name of the profile built from DefaultProfileConfig; an
// Identity with an empty Profile gets it.
const DefaultName = "default"

// Default argvs, used when neither the operator nor a template says otherwise.
var (
	// DefaultIdleCommand keeps an idle container alive and exits at once on
	// SIGTERM, so that deleting a pod takes well under a second.
	defaultIdleCommand = []string{"/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"}
	defaultShell       = []string{"/bin/sh", "-l"}
	defaultExecWrapper = []string{"/bin/sh", "-c"}
	defaultSFTPServer  = "/usr/lib/openssh/sftp-server"
)

// Profile is one kind of pod users can get: the scheduler's policy, the pod
// template with secure defaults applied, and the pool's size bounds.
type Profile struct {
	scheduler.Policy
	// Template is the rendered pod template, secure defaults applied. The
	// first container is where commands run.
	Template corev1.PodTemplateSpec
	// Hash identifies Template; pods carry it in podgate.io/template-hash.
	Hash    string
	PoolMin int
	PoolMax int
	// NoGrow keeps the idle target at PoolMin: misses do not raise it.
	// With PoolMin 0 the profile has no warm pool and every login gets a
	// pod created when it connects (the cold way, e.g. for comparison).
	NoGrow bool
	// Source names where the profile came from, for logs
	// ("config" or "podtemplate/NAME").
	Source string
}

// Container returns the name of the container commands run in.
func (p *Profile) Container() string {
	if len(p.Template.Spec.Containers) == 0 {
		return ""
	}
	return p.Template.Spec.Containers[0].Name
}

// DefaultProfileConfig holds the plain values cmd reads from the environment
// to build the default profile. Zero values take the documented defaults.
type DefaultProfileConfig struct {
	Name            string // default "default"
	Image           string // required
	ImagePullPolicy corev1.PullPolicy
	IdleCommand     []string // default: a sleep loop that exits on SIGTERM
	PoolMin         int
	PoolMax         int
	NoGrow          bool           // see Profile.NoGrow
	Mode            scheduler.Mode // default connection
	Shell           []string       // default ["/bin/sh", "-l"]
	ExecWrapper     []string       // default ["/bin/sh", "-c"]
	SFTPServer      string         // default /usr/lib/openssh/sftp-server; "-" disables sftp
	EnvAllow        []string
	PortForwarding  bool
	IdleTimeout     time.Duration
	MaxSession      time.Duration
	MaxWait         time.Duration // default 2m
	ReconnectWindow time.Duration
	MaxConnections  int
	MaxPerUser      int
	// AllowedUsers defaults to anyone.
	AllowedUsers []string
	CPURequest   string
	MemRequest   string
	CPULimit     string
	MemLimit     string
}

// FromConfig builds the default profile. It fails with a precise message
// when a value is out of range.
func FromConfig(c DefaultProfileConfig) (*Profile, error) {
	if c.Image == "" {
		return nil, fmt.Errorf("default profile: image is required")
	}
	name := c.Name
	if name == "" {
		name = DefaultName
	}
	pol := scheduler.Policy{
		Name:            name,
		Mode:            c.Mode,
		Shell:           c.Shell,
		ExecWrapper:     c.ExecWrapper,
		EnvAllow:        c.EnvAllow,
		PortForwarding:  c.PortForwarding,
		IdleTimeout:     c.IdleTimeout,
		MaxSession:      c.MaxSession,
		MaxWait:         c.MaxWait,
		ReconnectWindow: c.ReconnectWindow,
		MaxConnections:  c.MaxConnections,
		MaxPerUser:      c.MaxPerUser,
		AllowedUsers:    c.AllowedUsers,
		UserSelectable:  true,
	}
	sftp := c.SFTPServer
	if sftp == "" {
		sftp = defaultSFTPServer
	}
	if sftp != "-" {
		pol.Subsystems = map[string][]string{"sftp": {sftp}}
	} else {
		pol.Subsystems = map[string][]string{}
	}
	cmd := c.IdleCommand
	if len(cmd) == 0 {
		cmd = defaultIdleCommand
	}
	ctr := corev1.Container{
		Name:            "guest",
		Image:           c.Image,
		ImagePullPolicy: c.ImagePullPolicy,
		Command:         cmd,
	}
	if ctr.ImagePullPolicy == "" {
		ctr.ImagePullPolicy = corev1.PullIfNotPresent
	}
	for _, q := range []struct {
		val  string
		list *corev1.ResourceList
		name corev1.ResourceName
	}{
		{c.CPURequest, &ctr.Resources.Requests, corev1.ResourceCPU},
		{c.MemRequest, &ctr.Resources.Requests, corev1.ResourceMemory},
		{c.CPULimit, &ctr.Resources.Limits, corev1.ResourceCPU},
		{c.MemLimit, &ctr.Resources.Limits, corev1.ResourceMemory},
	} {
		if q.val == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.val)
		if err != nil {
			return nil, fmt.Errorf("default profile: %s quantity %q: %w", q.name, q.val, err)
		}
		if *q.list == nil {
			*q.list = corev1.ResourceList{}
		}
		(*q.list)[q.name] = v
	}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{ctr}},
	}
	p := &Profile{Policy: pol, Template: tmpl, PoolMin: c.PoolMin, PoolMax: c.PoolMax, NoGrow: c.NoGrow, Source: "config"}
	if err := finish(p, Loosening{}); err != nil {
		return nil, fmt.Errorf("default profile: %w", err)
	}
	return p, nil
}

// finish fills policy defaults, validates, applies secure defaults to the
// template and computes its hash.
func finish(p *Profile, loose Loosening) error {
	if p.Mode == "" {
		p.Mode = scheduler.ModeConnection
	}
	if p.Mode != scheduler.ModeConnection && p.Mode != scheduler.ModeSession {
		return fmt.Errorf("mode %q: want %q or %q", p.Mode, scheduler.ModeConnection, scheduler.ModeSession)
	}
	if len(p.Shell) == 0 {
		p.Shell = defaultShell
	}
	if len(p.ExecWrapper) == 0 {
		p.ExecWrapper = defaultExecWrapper
	}
	if p.Subsystems == nil {
		p.Subsystems = map[string][]string{"sftp": {defaultSFTPServer}}
	}
	if len(p.AllowedUsers) == 0 {
		p.AllowedUsers = []string{"*"}
	}
	if p.MaxWait == 0 {
		p.MaxWait = 2 * time.Minute
	}
	if p.PoolMin < 0 || p.PoolMax < 0 {
		return fmt.Errorf("pool size must not be negative (min %d, max %d)", p.PoolMin, p.PoolMax)
	}
	if p.PoolMax == 0 {
		p.PoolMax = p.PoolMin
	}
	if p.PoolMin > p.PoolMax {
		return fmt.Errorf("pool min %d exceeds pool max %d", p.PoolMin, p.PoolMax)
	}
	if p.PoolMax > maxPoolSize {
		return fmt.Errorf("pool max %d exceeds the limit of %d", p.PoolMax, maxPoolSize)
	}
	if len(p.Template.Spec.Containers) == 0 {
		return fmt.Errorf("pod template has no containers")
	}
	if p.Template.Spec.Containers[0].Image == "" {
		return fmt.Errorf("container %q has no image", p.Template.Spec.Containers[0].Name)
	}
	applySecureDefaults(&p.Template, loose)
	h, err := templateHash(&p.Template)
	if err != nil {
		return err
	}
	p.Hash = h
	return nil
}

// maxPoolSize bounds any one profile's pool so that a typo in an annotation
// cannot ask the cluster for a million pods.
const maxPoolSize = 1000
