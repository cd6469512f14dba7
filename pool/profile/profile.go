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
	Access
	// Template is the rendered pod template, secure defaults applied.
	// Sessions run in the container Container names; any others are
	// sidecars.
	Template corev1.PodTemplateSpec
	// Hash identifies Template; pods carry it in podgate.io/template-hash.
	Hash    string
	PoolMin int
	PoolMax int
	// NoGrow keeps the idle target at PoolMin: misses do not raise it.
	// With PoolMin 0 the profile has no warm pool and every login gets a
	// pod created when it connects (the cold way, e.g. for comparison).
	NoGrow bool
	// Peaks are the profile's scheduled peaks of demand (AnnPeaks).
	Peaks []Peak
	// Source names where the profile came from, for logs
	// ("config" or "podtemplate/NAME").
	Source string
	// Defaults are what PodTemplate profiles inherit from this one; they
	// are set on the profile FromConfig builds.
	Defaults Defaults

	// container is the session container's name; see sessionContainer.
	container string
}

// Container returns the name of the container commands run in.
func (p *Profile) Container() string { return p.container }

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
	ForwardAllow    string        // scheduler.ParseForwardRules syntax
	IdleTimeout     time.Duration // 0: never
	MaxSession      time.Duration // 0: no limit
	MaxWait         time.Duration // 0: refuse at once when no pod is idle
	ReconnectWindow time.Duration
	MaxConnections  int
	MaxPerUser      int
	// AllowedUsers defaults to anyone.
	AllowedUsers []string
	// Quantities of the guest container's resources; empty ones take
	// small built-in values, except EphemeralLimit: empty sets none.
	CPURequest     string
	MemRequest     string
	CPULimit       string
	MemLimit       string
	EphemeralLimit string
	// Home is the guest user's home directory in the image; it becomes a
	// size-limited emptyDir. Empty: no home volume.
	Home string
	// ReadOnlyRoot mounts the guest's root filesystem read-only.
	ReadOnlyRoot bool
	// ImagePullSecrets name Secrets in the guest namespace; see
	// Store.WatchPullSecrets for how a missing one is reported.
	ImagePullSecrets []string

	// DisableCommand, MOTD and Record are as in scheduler.Policy, and
	// PodTemplate profiles inherit them; the MOTD must pass CheckMessage.
	DisableCommand bool
	MOTD           string
	Record         scheduler.RecordMode
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
	d, err := c.defaults()
	if err != nil {
		return nil, fmt.Errorf("default profile: %w", err)
	}
	if c.Home != "" {
		if _, err := parseHome(c.Home); err != nil {
			return nil, fmt.Errorf("default profile: home: %w", err)
		}
	}
	pol := d.policy(name)
	pol.Mode = c.Mode
	pol.Shell = c.Shell
	pol.ExecWrapper = c.ExecWrapper
	pol.PortForwarding = c.PortForwarding
	pol.ReconnectWindow = c.ReconnectWindow
	pol.MaxConnections = c.MaxConnections
	pol.AllowedUsers = c.AllowedUsers
	pol.UserSelectable = true
	if pol.ForwardAllow, err = scheduler.ParseForwardRules(c.ForwardAllow); err != nil {
		return nil, fmt.Errorf("default profile: forwarding rules: %w", err)
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
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{ctr}},
	}
	for _, name := range c.ImagePullSecrets {
		tmpl.Spec.ImagePullSecrets = append(tmpl.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
	}
	p := &Profile{Policy: pol, Template: tmpl, PoolMin: c.PoolMin, PoolMax: c.PoolMax, NoGrow: c.NoGrow, Source: "config", Defaults: d}
	disk := Disk{Limit: d.DiskLimit, Home: c.Home, ReadOnlyRoot: c.ReadOnlyRoot}
	if err := finish(p, Loosening{}, d.Resources, disk); err != nil {
		return nil, fmt.Errorf("default profile: %w", err)
	}
	return p, nil
}

// defaults parses the configured values PodTemplate profiles inherit.
func (c DefaultProfileConfig) defaults() (Defaults, error) {
	d := Defaults{
		IdleTimeout: c.IdleTimeout, MaxSession: c.MaxSession, MaxWait: c.MaxWait,
		MaxPerUser: c.MaxPerUser, EnvAllow: c.EnvAllow,
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}},
		Login:     LoginDefaults{MOTD: NormalizeMessage(c.MOTD), DisableCommand: c.DisableCommand, Record: c.Record},
	}
	if err := CheckMessage(d.Login.MOTD, true); err != nil {
		return d, fmt.Errorf("message of the day: %w", err)
	}
	for _, q := range []struct {
		val  string
		list corev1.ResourceList
		name corev1.ResourceName
	}{
		{c.CPURequest, d.Resources.Requests, corev1.ResourceCPU},
		{c.MemRequest, d.Resources.Requests, corev1.ResourceMemory},
		{c.CPULimit, d.Resources.Limits, corev1.ResourceCPU},
		{c.MemLimit, d.Resources.Limits, corev1.ResourceMemory},
		{c.EphemeralLimit, d.Resources.Limits, corev1.ResourceEphemeralStorage},
	} {
		if q.val == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.val)
		if err != nil {
			return d, fmt.Errorf("%s quantity %q: %w", q.name, q.val, err)
		}
		q.list[q.name] = v
	}
	d.DiskLimit = d.Resources.Limits[corev1.ResourceEphemeralStorage]
	return d, nil
}

// finish fills policy defaults, validates, applies secure defaults, the
// resources (res, for what containers state nothing about) and the disk
// bounds to the template, and computes its hash.
func finish(p *Profile, loose Loosening, res corev1.ResourceRequirements, disk Disk) error {
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
	if !p.ForwardAllow.IsZero() && !p.PortForwarding {
		return fmt.Errorf("forwarding rules %q have no effect while port forwarding is off", p.ForwardAllow)
	}
	session, err := sessionContainer(p)
	if err != nil {
		return err
	}
	if session.Image == "" {
		return fmt.Errorf("container %q has no image", session.Name)
	}
	if err := checkLogin(p); err != nil {
		return err
	}
	keepAlive(session)
	applyDisk(&p.Template.Spec, disk, session.Name)
	applySecureDefaults(&p.Template, loose, res, session.Name)
	h, err := templateHash(&p.Template)
	if err != nil {
		return err
	}
	p.Hash = h
	return nil
}

// maxPoolSize bounds any one profile's pool so that a typo in an annotation
// cannot ask the cluster for a million pods. It is above the largest pool
// measured (5,000 idle pods on 100 nodes, make bench-scale).
const maxPoolSize = 10000
