package profile

import (
	"path"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// Disk is how a profile bounds what its pods may write to the node's disk.
//
// The kubelet counts a container's writable layer, its logs and its pod's
// emptyDir volumes against the container's ephemeral-storage limit, and
// evicts the pod when they exceed it; an emptyDir with a sizeLimit is
// evicted for on its own. So the writable places a shell needs (/tmp,
// /var/tmp on a read-only root, and the home directory) are emptyDirs
// sized to the limit, and the whole pod stays within it too.
type Disk struct {
	// Limit is every guest container's ephemeral-storage limit and the
	// sizeLimit of the emptyDirs below; zero sets neither.
	Limit resource.Quantity
	// Home, when set, is the guest user's home directory in the image; it
	// becomes an emptyDir, so that it is writable on a read-only root.
	Home string
	// ReadOnlyRoot mounts the session container's root filesystem
	// read-only; /tmp, /var/tmp and Home stay writable as emptyDirs.
	ReadOnlyRoot bool
}

// Names of the volumes podgate adds to the session container.
const (
	volTmp    = "podgate-tmp"
	volVarTmp = "podgate-var-tmp"
	volHome   = "podgate-home"
)

// applyDisk sets the ephemeral-storage limit on every container that
// states none, and gives the session container (named session) its
// writable emptyDirs and, when asked, a read-only root. A path the
// template already mounts something at is left as the template has it.
func applyDisk(s *corev1.PodSpec, d Disk, session string) {
	if !d.Limit.IsZero() {
		for _, cs := range [][]corev1.Container{s.InitContainers, s.Containers} {
			for i := range cs {
				c := &cs[i]
				if c.Resources.Limits == nil {
					c.Resources.Limits = corev1.ResourceList{}
				}
				setIfAbsent(c.Resources.Limits, corev1.ResourceEphemeralStorage, d.Limit)
			}
		}
	}
	c := containerNamed(s, session)
	if c == nil {
		return
	}
	type mount struct{ vol, at string }
	var want []mount
	if d.Home != "" {
		want = append(want, mount{volHome, path.Clean(d.Home)})
	}
	want = append(want, mount{volTmp, "/tmp"})
	if d.ReadOnlyRoot {
		want = append(want, mount{volVarTmp, "/var/tmp"})
	}
	for _, m := range want {
		if mountedAt(c, m.at) || hasVolume(s, m.vol) {
			continue
		}
		ed := &corev1.EmptyDirVolumeSource{}
		if !d.Limit.IsZero() {
			ed.SizeLimit = ptr.To(d.Limit.DeepCopy())
		}
		s.Volumes = append(s.Volumes, corev1.Volume{Name: m.vol, VolumeSource: corev1.VolumeSource{EmptyDir: ed}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: m.vol, MountPath: m.at})
	}
	if d.ReadOnlyRoot {
		if c.SecurityContext == nil {
			c.SecurityContext = &corev1.SecurityContext{}
		}
		c.SecurityContext.ReadOnlyRootFilesystem = ptr.To(true)
	}
}

func mountedAt(c *corev1.Container, p string) bool {
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) == p {
			return true
		}
	}
	return false
}

func hasVolume(s *corev1.PodSpec, name string) bool {
	for _, v := range s.Volumes {
		if v.Name == name {
			return true
		}
	}
	return false
}
