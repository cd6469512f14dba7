#!/usr/bin/env bash
# Builds podgate's image without Docker and imports it into the local
# cluster's containerd as localhost/podgate:local. The content matches the
# Dockerfile's final stage: /podgate (static), deploy/image/rootfs (passwd,
# group), the CA bundle, /tmp (1777), USER 65532:65532, ENTRYPOINT
# ["/podgate"], OCI labels.
#
# Usage: deploy/image/build.sh [archive.tar]   (default bin/podgate-image.tar)
#   TAG                 image reference (default localhost/podgate:local)
#   CONTAINERD_ADDRESS  containerd socket to import into (default: the local
#                       cluster's); set IMPORT=0 to only write the archive,
#                       e.g. for `kind load image-archive`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tag="${TAG:-localhost/podgate:local}"
out="${1:-$root/bin/podgate-image.tar}"
address="${CONTAINERD_ADDRESS:-/var/lib/podgate-localcluster/containerd/containerd.sock}"
ca="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

for tool in go umoci skopeo; do
	command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (apt-get install umoci skopeo)" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "building /podgate" >&2
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/podgate" ./cmd/podgate)

rev="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
image="$work/oci:local"
umoci init --layout "$work/oci"
umoci new --image "$image"
umoci unpack --image "$image" "$work/bundle"
rootfs="$work/bundle/rootfs"
cp -a "$root/deploy/image/rootfs/." "$rootfs/"
install -D -m 0644 "$ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"
install -d -m 1777 "$rootfs/tmp"
install -m 0755 "$work/podgate" "$rootfs/podgate"
umoci repack --image "$image" "$work/bundle"
umoci config --image "$image" \
	--config.user 65532:65532 \
	--config.entrypoint /podgate \
	--config.label org.opencontainers.image.title=podgate \
	--config.label "org.opencontainers.image.description=SSH server that puts every user into a warm Kubernetes pod" \
	--config.label org.opencontainers.image.source=https://github.com/podgate/podgate \
	--config.label "org.opencontainers.image.version=${VERSION:-dev}" \
	--config.label "org.opencontainers.image.revision=$rev"

mkdir -p "$(dirname "$out")"
rm -f "$out.tmp"
skopeo copy --quiet "oci:$image" "docker-archive:$out.tmp:$tag"
mv "$out.tmp" "$out"
echo "wrote $out ($tag)" >&2

if [[ "${IMPORT:-1}" == 1 ]]; then
	ctr --address "$address" -n k8s.io images import --snapshotter overlayfs "$out"
	echo "imported $tag into containerd at $address" >&2
fi
