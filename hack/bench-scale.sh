#!/usr/bin/env bash
# make bench-scale, inside hack/with-cluster.sh: gives the local cluster
# SCALE_NODES KWOK fake nodes (KWOK started through the harness), runs the
# scale benchmark and removes the fake nodes and KWOK again, whatever the
# benchmark's result. Arguments go to podgate-bench-scale.
set -euo pipefail
cd "$(dirname "$0")/.."
LC=./bin/localcluster
nodes=${SCALE_NODES:-100}
cleanup() { $LC kwok -nodes 0 || rc=1; }
rc=0
trap cleanup EXIT
$LC kwok -nodes "$nodes"
./bin/podgate-bench-scale -nodes "$nodes" "$@" || rc=$?
cleanup
trap - EXIT
exit $rc
