#!/usr/bin/env bash
# `make run`: podgate on a real cluster in one command. Without KUBECONFIG it
# brings up the local cluster (reusing a running one), runs podgate against it
# in demo auth mode on loopback, and prints the ssh line. Ctrl-C stops podgate
# cleanly (it drains and deletes its pods) and then the cluster it started.
set -euo pipefail
cd "$(dirname "$0")/.."
# PODGATE_PORT, PODGATE_NAMESPACE, PODGATE_METRICS_ADDR and PODGATE_RUN_STATE
# let a second `make run` (or a test) run beside one that is already up.
PORT=${PODGATE_PORT:-2222}
NS=${PODGATE_NAMESPACE:-podgate-guests}
METRICS=${PODGATE_METRICS_ADDR:-127.0.0.1:9090}
STATE=${PODGATE_RUN_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/podgate/run}
KUBECTL=${XDG_CACHE_HOME:-$HOME/.cache}/podgate/bin/k8s-v1.33.13/kubectl
mkdir -p "$STATE"
run_podgate() {
  # podgate refuses PODGATE_ variables it does not know.
  unset PODGATE_RUN_STATE
  if ! "$KUBECTL" get namespace "$NS" >/dev/null 2>&1; then
    "$KUBECTL" create namespace "$NS" >/dev/null
  fi
  cat <<MSG

  podgate is starting on 127.0.0.1:$PORT in demo mode: any user name logs in
  with any password (or any SSH key). Without a key, ssh asks for a
  password: type anything. Connect with:

    ssh -p $PORT -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=$STATE/known_hosts ${USER:-$(id -un)}@localhost

  Metrics: http://$METRICS/metrics   Stop: Ctrl-C

MSG
  PODGATE_AUTH_MODE=demo \
  PODGATE_LISTEN=127.0.0.1:$PORT \
  PODGATE_METRICS_ADDR=$METRICS \
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
