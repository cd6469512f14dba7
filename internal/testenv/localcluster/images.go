package localcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// image is a guest image recipe. recipe names the recipe's version: bump
// it when the build below changes, so cached archives are rebuilt.
type image struct {
	ref     string
	recipe  string
	user    string
	workdir string
	cmd     []string
	rootfs  func(ctx context.Context, o Options, dir string) error
}

func (o Options) images() []image {
	return []image{
		{ref: PauseImage, recipe: "pause-1", user: "65535:65535", cmd: []string{"/pause"}, rootfs: pauseRootfs},
		{ref: BusyboxImage, recipe: "busybox-1", user: "1000:1000", workdir: "/home/user", cmd: []string{"/bin/sh"}, rootfs: busyboxRootfs},
		{ref: DebianImage, recipe: "debian-bookworm-1", user: "1000:1000", workdir: "/home/user", cmd: []string{"/bin/bash"}, rootfs: debianRootfs},
	}
}

func (o Options) archivePath(im image) string {
	return filepath.Join(o.CacheDir, "images", im.recipe+".tar")
}

// EnsureImages builds every missing guest image archive into the cache.
// The Debian image takes about 1.5 minutes the first time (debootstrap).
func (o Options) EnsureImages(ctx context.Context) error {
	for _, im := range o.images() {
		if _, err := os.Stat(o.archivePath(im)); err == nil {
			continue
		}
		o.Log.Info("building guest image", "image", im.ref)
		if err := o.buildImage(ctx, im); err != nil {
			return fmt.Errorf("building image %s: %w", im.ref, err)
		}
	}
	return nil
}

// buildImage fills a root filesystem, packs it as an OCI image with umoci,
// and turns that into a docker-archive with skopeo, which `ctr images
// import` accepts.
func (o Options) buildImage(ctx context.Context, im image) error {
	work, err := os.MkdirTemp("", "podgate-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	layout, bundle, rootfs := filepath.Join(work, "oci"), filepath.Join(work, "bundle"), filepath.Join(work, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return err
	}
	if err := im.rootfs(ctx, o, rootfs); err != nil {
		return err
	}
	tag := layout + ":local"
	steps := [][]string{
		{"umoci", "init", "--layout", layout},
		{"umoci", "new", "--image", tag},
		{"umoci", "unpack", "--image", tag, bundle},
		{"cp", "-a", rootfs + "/.", filepath.Join(bundle, "rootfs") + "/"},
		{"umoci", "repack", "--image", tag, bundle},
	}
	cfg := []string{"umoci", "config", "--image", tag, "--config.user", im.user,
		"--config.env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"--config.label", "org.opencontainers.image.title=" + im.ref,
		"--config.label", "org.opencontainers.image.source=podgate localcluster " + im.recipe}
	if im.workdir != "" {
		cfg = append(cfg, "--config.workingdir", im.workdir)
	}
	for _, c := range im.cmd {
		cfg = append(cfg, "--config.cmd", c)
	}
	steps = append(steps, cfg)
	out := o.archivePath(im)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	os.Remove(out + ".tmp")
	steps = append(steps, []string{"skopeo", "copy", "--quiet", "oci:" + tag, "docker-archive:" + out + ".tmp:" + im.ref})
	for _, s := range steps {
		if _, err := output(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	return os.Rename(out+".tmp", out)
}

// importImages loads every archive into containerd's k8s.io namespace.
func (o Options) importImages(ctx context.Context) error {
	for _, im := range o.images() {
		if _, err := output(ctx, "ctr", "--address", o.ContainerdSocket(), "-n", "k8s.io",
			"images", "import", "--snapshotter", "overlayfs", o.archivePath(im)); err != nil {
			return fmt.Errorf("importing %s: %w", im.ref, err)
		}
	}
	return nil
}

func pauseRootfs(ctx context.Context, o Options, dir string) error {
	return o.goBuild(ctx, o.SourceDir, "./pause", filepath.Join(dir, "pause"), "-s -w")
}

// guestUser adds the unprivileged user 1000 that guest pods run as.
func guestUser(dir, shell string) error {
	add := map[string]string{
		"etc/passwd": "user:x:1000:1000:podgate user:/home/user:" + shell + "\n",
		"etc/group":  "user:x:1000:\n",
	}
	for name, line := range add {
		p := filepath.Join(dir, name)
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), "\nuser:") || strings.HasPrefix(string(b), "user:") {
			continue
		}
		if err := writeFile(p, append(b, line...), 0o644); err != nil {
			return err
		}
	}
	home := filepath.Join(dir, "home", "user")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	if err := os.Chown(home, 1000, 1000); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o777); err != nil {
		return err
	}
	return os.Chmod(tmp, 0o1777)
}

func busyboxRootfs(ctx context.Context, o Options, dir string) error {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	if _, err := output(ctx, "cp", "/bin/busybox", filepath.Join(bin, "busybox")); err != nil {
		return err
	}
	list, err := output(ctx, "/bin/busybox", "--list")
	if err != nil {
		return err
	}
	for _, applet := range strings.Fields(list) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(bin, applet)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	for _, d := range []string{"sbin", "usr/bin", "etc", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := writeFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\n"), 0o644); err != nil {
		return err
	}
	return guestUser(dir, "/bin/sh")
}

// debianRootfs is a minbase Debian bookworm with bash, coreutils, procps,
// busybox (for nc and httpd) and openssh-sftp-server, so that sftp and scp
// work as on any Debian host.
func debianRootfs(ctx context.Context, o Options, dir string) error {
	mirror := os.Getenv("PODGATE_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = aptMirror()
	}
	if mirror == "" {
		return fmt.Errorf("no Debian mirror: set PODGATE_DEBIAN_MIRROR or configure apt")
	}
	if err := o.run(ctx, "", nil, "debootstrap", "--variant=minbase",
		"--include=procps,openssh-sftp-server,busybox,less,ncurses-base",
		"bookworm", dir, mirror); err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	for _, junk := range []string{"var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"} {
		p := filepath.Join(dir, junk)
		os.RemoveAll(p)
		os.MkdirAll(p, 0o755)
	}
	return guestUser(dir, "/bin/bash")
}

// aptMirror returns the first bookworm "debian" URI configured for apt on
// this machine (deb822 sources or the classic sources.list), so debootstrap
// uses the same mirror as apt-get.
func aptMirror() string {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "URIs:"); ok {
				for _, u := range strings.Fields(v) {
					if strings.HasSuffix(strings.TrimRight(u, "/"), "/debian") {
						return u
					}
				}
			}
		}
	}
	b, _ := os.ReadFile("/etc/apt/sources.list")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "deb" && strings.HasSuffix(strings.TrimRight(f[1], "/"), "/debian") {
			return f[1]
		}
	}
	return ""
}
