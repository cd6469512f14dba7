package deploy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// checkImage compares the docker-archive written by deploy/image/build.sh
// with the Dockerfile's final stage, so that the image the test deploys is
// the one the Dockerfile describes: the same user, entrypoint and label
// keys, and the same files (the static binary, passwd and group, the CA
// bundle and a world-writable sticky /tmp), and nothing else but their
// parent directories.
func checkImage(t *testing.T, archive string) {
	t.Helper()
	files, cfg, err := readDockerArchive(archive)
	if err != nil {
		t.Fatalf("reading the image archive: %v", err)
	}
	df, err := os.ReadFile(repoDir(t, "../Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	final := string(df)
	if i := strings.LastIndex(final, "\nFROM "); i >= 0 {
		final = final[i:]
	}
	if m := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(final); m == nil || m[1] != cfg.User {
		t.Errorf("image user %q, Dockerfile's final stage says %q", cfg.User, m)
	}
	var entry []string
	if m := regexp.MustCompile(`(?m)^ENTRYPOINT (\[.*\])`).FindStringSubmatch(final); m == nil {
		t.Error("the Dockerfile's final stage has no exec-form ENTRYPOINT")
	} else if err := json.Unmarshal([]byte(m[1]), &entry); err != nil || !reflect.DeepEqual(entry, cfg.Entrypoint) {
		t.Errorf("image entrypoint %q, Dockerfile says %s (%v)", cfg.Entrypoint, m[1], err)
	}
	for _, key := range regexp.MustCompile(`(org\.opencontainers\.image\.[a-z]+)=`).FindAllStringSubmatch(final, -1) {
		if cfg.Labels[key[1]] == "" {
			t.Errorf("image lacks the Dockerfile's label %s", key[1])
		}
	}

	want := map[string]func(h *tar.Header) bool{
		"podgate":                           func(h *tar.Header) bool { return h.Typeflag == tar.TypeReg && h.Mode&0o111 != 0 && h.Size > 0 },
		"etc/passwd":                        regular,
		"etc/group":                         regular,
		"etc/ssl/certs/ca-certificates.crt": regular,
		"tmp":                               func(h *tar.Header) bool { return h.Typeflag == tar.TypeDir && h.Mode&0o1777 == 0o1777 },
		"etc/ssl/certs":                     nil, "etc/ssl": nil, "etc": nil,
	}
	for name, h := range files {
		ok, known := want[name]
		switch {
		case !known:
			t.Errorf("image has %s, which the Dockerfile does not put there", name)
		case ok != nil && !ok(h):
			t.Errorf("image file %s has type %c mode %o size %d", name, h.Typeflag, h.Mode, h.Size)
		}
	}
	for name, ok := range want {
		if _, there := files[name]; !there && ok != nil {
			t.Errorf("image lacks %s", name)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("image matches the Dockerfile: user %s, entrypoint %q, %d labels, /podgate %d bytes", cfg.User, cfg.Entrypoint, len(cfg.Labels), files["podgate"].Size)
}

func regular(h *tar.Header) bool { return h.Typeflag == tar.TypeReg && h.Size > 0 }

// imageConfig is the part of an image's config the Dockerfile sets.
type imageConfig struct {
	User       string
	Entrypoint []string
	Labels     map[string]string
}

// readDockerArchive returns the files of every layer of a docker-archive
// (by path without the leading "/") and the image's config.
func readDockerArchive(file string) (map[string]*tar.Header, imageConfig, error) {
	var cfg imageConfig
	entries := map[string][]byte{}
	links := map[string]string{}
	f, err := os.Open(file)
	if err != nil {
		return nil, cfg, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, cfg, err
		}
		if h.Typeflag == tar.TypeSymlink {
			links[h.Name] = path.Join(path.Dir(h.Name), h.Linkname)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, cfg, err
			}
			entries[h.Name] = b
		}
	}
	var manifest []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(entries["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		return nil, cfg, fmt.Errorf("manifest.json: want one image (%v)", err)
	}
	var config struct{ Config imageConfig }
	if err := json.Unmarshal(entries[manifest[0].Config], &config); err != nil {
		return nil, cfg, fmt.Errorf("image config %s: %w", manifest[0].Config, err)
	}
	files := map[string]*tar.Header{}
	for _, layer := range manifest[0].Layers {
		if target, ok := links[layer]; ok { // a legacy name linked to the blob
			layer = target
		}
		data, ok := entries[layer]
		if !ok {
			return nil, cfg, fmt.Errorf("layer %s is not in the archive", layer)
		}
		r := bufio.NewReader(bytes.NewReader(data))
		var lr io.Reader = r
		if magic, _ := r.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
			gz, err := gzip.NewReader(r)
			if err != nil {
				return nil, cfg, err
			}
			lr = gz
		}
		ltr := tar.NewReader(lr)
		for {
			h, err := ltr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, cfg, fmt.Errorf("layer %s: %w", layer, err)
			}
			name := strings.TrimSuffix(strings.TrimPrefix(path.Clean("/"+h.Name), "/"), "/")
			if name != "" {
				files[name] = h
			}
		}
	}
	return files, config.Config, nil
}
