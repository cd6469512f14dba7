// Package deploy holds podgate's Kubernetes manifests (the kustomize base,
// the overlays and the Prometheus Operator objects), the Prometheus rules and
// the image build. It has no Go code of its own: its tests exist so that the
// manifests are tried the way an operator would try them. They render every
// kustomization with kubectl, validate the result against the API server
// (and the custom resources offline), build the image, deploy podgate into
// the local cluster and log in with OpenSSH, which proves the image, the
// in-cluster configuration and the RBAC together.
package deploy
