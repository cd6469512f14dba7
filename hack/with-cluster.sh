#!/usr/bin/env bash
# Runs a command against a real cluster. With KUBECONFIG set, that cluster
# is used as it is (e.g. a kind cluster). Otherwise the local cluster is
# used: reused if one is already running (and left running), or brought up
# for the command and torn down after it, whatever the command's result.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${KUBECONFIG:-}" ]; then
  exec "$@"
fi
LC=./bin/localcluster
owned=0
# Capture first: with pipefail, grep -q closing the pipe early would fail
# the pipeline through SIGPIPE.
status=$($LC status)
if grep -q '^cluster: running' <<<"$status"; then
  echo "with-cluster: reusing the running local cluster"
else
  $LC up
  owned=1
fi
export KUBECONFIG=$($LC kubeconfig)
rc=0
"$@" || rc=$?
if [ $owned = 1 ]; then
  $LC down || rc=1
fi
exit $rc
