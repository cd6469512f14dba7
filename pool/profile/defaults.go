package profile

import (
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podgate/podgate/scheduler"
)

// Defaults are the operator's global settings that every profile starts
// from: the default profile is built from them, and a PodTemplate profile
// inherits each one unless one of its annotations says otherwise. Zero
// values mean what they mean in a profile (no limit, refuse at once, no
// variables), never "use some other default": that way a 0s in the
// configuration means the same in every profile.
type Defaults struct {
	IdleTimeout time.Duration // 0: never
	MaxSession  time.Duration // 0: no limit
	MaxWait     time.Duration // 0: a login that finds no idle pod is refused at once
	MaxPerUser  int           // 0: no per-user limit
	EnvAllow    []string
	// Resources are the requests and limits every container gets for
	// each resource it states nothing about.
	Resources corev1.ResourceRequirements
	// DiskLimit is the ephemeral-storage limit, and the size of the
	// writable emptyDirs; see Disk. Zero sets none.
	DiskLimit resource.Quantity
	// Login are the message of the day, file-transfer-only and recording
	// settings (see login.go).
	Login LoginDefaults
}

// fallbackDefaults are used when a store has no default profile to
// inherit from (all profiles come from templates): small resources,
// because idle pods are mostly asleep, and a two-minute wait.
func fallbackDefaults() Defaults {
	return Defaults{
		MaxWait: 2 * time.Minute,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("50m"),
				corev1.ResourceMemory: resource.MustParse("64Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("1"),
				corev1.ResourceMemory: resource.MustParse("512Mi"),
			},
		},
		DiskLimit: resource.MustParse("1Gi"),
	}
}

// policy starts a profile's policy from the defaults.
func (d Defaults) policy(name string) scheduler.Policy {
	return scheduler.Policy{
		Name:        name,
		IdleTimeout: d.IdleTimeout,
		MaxSession:  d.MaxSession,
		MaxWait:     d.MaxWait,
		MaxPerUser:  d.MaxPerUser,
		EnvAllow:    slices.Clone(d.EnvAllow),

		MOTD:           d.Login.MOTD,
		DisableCommand: d.Login.DisableCommand,
		Record:         d.Login.Record,
	}
}
