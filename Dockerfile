# syntax=docker/dockerfile:1
# podgate's image: one static binary, no shell, no package manager, run as
# the unprivileged user 65532. deploy/image/build.sh produces the same final
# image without Docker (umoci + skopeo), for the local cluster.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not re-download modules.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/podgate ./cmd/podgate
# The rest of the final filesystem is assembled here, where modes are plain
# chmod: COPY --chmod on a directory behaves differently across Docker and
# BuildKit versions, and /tmp must be 1777. Entries below a copied directory
# keep their modes.
RUN mkdir -p /rootfs/tmp && chmod 1777 /rootfs/tmp \
 && install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt

FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
# /etc/passwd and /etc/group name the nonroot user; the CA bundle lets the
# auth webhook verify public certificates; /tmp is for libraries that expect
# it (the Deployment mounts an emptyDir there anyway).
COPY deploy/image/rootfs/ /
COPY --from=build /rootfs/ /
COPY --from=build /out/podgate /podgate
USER 65532:65532
ENTRYPOINT ["/podgate"]
LABEL org.opencontainers.image.title="podgate" \
      org.opencontainers.image.description="SSH server that puts every user into a warm Kubernetes pod" \
      org.opencontainers.image.source="https://github.com/podgate/podgate" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
