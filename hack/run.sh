#!/usr/bin/env bash
# `make run`: podgate on a real cluster in one command. Without KUBECONFIG it
# brings up the local cluster (reusing a running one), runs podgate against it
# in demo auth mode on loopback, and prints the ssh line. Ctrl-C stops podgate
# cleanly (it drains and deletes its pods) and then the cluster it started.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PODGATE_PORT:-2222}
NS=${PODGATE_NAMESPACE:-podgate-guests}
STATE=${XDG_CACHE_HOME:-$HOME/.cache}/podgate/run
KUBECTL=${XDG_CACHE_HOME:-$HOME/.cache}/podgate/bin/k8s-v1.33.13/kubectl
mkdir -p "$STATE"
run_podgate() {
  if ! "$KUBECTL" get namespace "$NS" >/dev/null 2>&1; then
    "$KUBECTL" create namespace "$NS" >/dev/null
  fi
  cat <<MSG

  podgate is starting on 127.0.0.1:$PORT (demo auth: any user, any key).
  Connect with:

    ssh -p $PORT -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=$STATE/known_hosts ${USER:-$(id -un)}@localhost

  Metrics: http://127.0.0.1:9090/metrics   Stop: Ctrl-C

MSG
  PODGATE_AUTH_MODE=demo \
  PODGATE_LISTEN=127.0.0.1:$PORT \
  PODGATE_NAMESPACE=$NS \
  PODGATE_REPLICA_ID=${PODGATE_REPLICA_ID:-local} \
  PODGATE_HOST_KEY_PATH=$STATE/ssh_host_ed25519_key \
  PODGATE_AUDIT_LOG=$STATE/audit.log \
  ./bin/podgate
}
if [ "${1:-}" = "--inner" ]; then
  run_podgate
  exit
fi
exec ./hack/with-cluster.sh "$0" --inner
