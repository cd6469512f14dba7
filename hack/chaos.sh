#!/usr/bin/env bash
# make chaos: every chaos scenario at full size on the local cluster, then
# every fuzz target for minutes, then the report under chaos/results/.
#
#   1. the non-disruptive scenarios (faults, load, hostile, isolation) under
#      the shared cluster lock;
#   2. the disruptive fault scenarios (API server, etcd and kubelet stopped)
#      under the exclusive lock, with PODGATE_CHAOS_DISRUPT=1; afterwards
#      every daemon they touch is started again (a no-op when running);
#   3. each fuzz target in its own `go test -fuzz` call, together at least
#      PODGATE_FUZZ_TOTAL seconds (default 660); a crasher fails the run and
#      stays under the package's testdata/fuzz as a regression corpus;
#   4. chaosreport renders chaos/results/report-<date>.md and latest.md and
#      fails when anything did not hold.
#
# The local cluster is brought up if none is running (and then torn down
# at the end), as for make test; with KUBECONFIG set, that cluster is used
# and the disruptive scenarios skip themselves.
#
# CHAOS_ONLY=regex re-runs only the matching scenarios (a go test -run
# pattern, e.g. '^TestFaultClusterAPIServer$' after a fix): their records
# are appended to the day's raw file, fuzzing is skipped unless
# PODGATE_FUZZ_TOTAL is set, and the report shows the newest record of
# each scenario, listing the records it supersedes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != inner ]; then
  # Remember whether the cluster is the caller's: with-cluster.sh sets
  # KUBECONFIG either way.
  export PODGATE_CHAOS_OWN_CLUSTER=${KUBECONFIG:+1}
  exec ./hack/with-cluster.sh "$0" inner
fi

LOCK=/tmp/podgate-cluster.lock
# flock -o: the lock is held by flock itself, not inherited by the tests
# and the podgate processes they start, so that one left behind by a
# killed test cannot hold the cluster lock forever.
GO=${GO:-go}
date=$(date -u +%Y-%m-%d)
out=chaos/results
mkdir -p "$out"
raw=$PWD/$out/raw-$date.jsonl
fuzz=$PWD/$out/fuzz-$date.tsv
only=${CHAOS_ONLY:-}
if [ -z "$only" ]; then
  : >"$raw"
  : >"$fuzz"
fi
touch "$raw" "$fuzz"
export PODGATE_CHAOS=full PODGATE_CHAOS_REPORT=$raw
rc=0

echo "== chaos: scenarios (shared cluster lock)"
set +e
flock -o -s "$LOCK" $GO test -count=1 -p 1 -timeout 120m -v ${only:+-run "$only"} ./chaos/ 2>&1 | tee ${only:+-a} "$out/scenarios-$date.log" | grep -E '^(--- |FAIL|ok|PASS)|held|figure'
st=${PIPESTATUS[0]}
set -e
[ "$st" = 0 ] || rc=1

echo "== chaos: disruptive fault scenarios (exclusive cluster lock)"
dis='^TestFaultCluster'
if [ -n "$only" ]; then
  names=$($GO test -list "$only" ./chaos/ | grep '^TestFaultCluster' | paste -sd'|' || true)
  dis=${names:+^($names)\$}
fi
if [ -n "$dis" ]; then
  set +e
  PODGATE_CHAOS_DISRUPT=1 flock -o -x "$LOCK" $GO test -count=1 -p 1 -timeout 40m -v -run "$dis" ./chaos/ 2>&1 | tee ${only:+-a} "$out/disruptive-$date.log" | grep -E '^(--- |FAIL|ok|PASS)|held|figure'
  st=${PIPESTATUS[0]}
  set -e
  [ "$st" = 0 ] || rc=1
fi
if [ -z "${PODGATE_CHAOS_OWN_CLUSTER:-}" ]; then
  for d in etcd kube-apiserver kubelet; do
    ./bin/localcluster component start "$d" || { echo "chaos: could not start $d again" >&2; rc=1; }
  done
fi

echo "== chaos: fuzzing"
mapfile -t targets < <(grep -rn '^func Fuzz' --include='*_test.go' . | sed -E 's#^\./(.*)/[^/]+_test\.go:[0-9]+:func (Fuzz[A-Za-z0-9_]+).*#\1 \2#' | sort -u)
total=${PODGATE_FUZZ_TOTAL:-660}
if [ -n "$only" ]; then
  total=${PODGATE_FUZZ_TOTAL:-0}
fi
n=${#targets[@]}
if [ "$n" -gt 0 ] && [ "$total" -gt 0 ]; then
  each=$(( (total + n - 1) / n ))
  for t in "${targets[@]}"; do
    pkg=./${t% *}
    name=${t#* }
    echo "-- $pkg $name for ${each}s"
    log=$(mktemp)
    start=$(date +%s)
    if $GO test -run '^$' -fuzz "^${name}\$" -fuzztime "${each}s" "$pkg" >"$log" 2>&1; then
      res=ok
    else
      res=FAIL
      rc=1
      cat "$log"
    fi
    secs=$(( $(date +%s) - start ))
    # The last progress line carries the number of executions.
    detail=$(grep -oE 'execs: [0-9]+' "$log" | tail -1 || true)
    if [ "$res" = FAIL ]; then
      detail="$detail; $(grep -m1 -oE 'testdata/fuzz/[^ ]+' "$log" || echo 'see the log')"
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$pkg" "$name" "$secs" "$res" "$detail" >>"$fuzz"
    rm -f "$log"
  done
fi

echo "== chaos: report"
$GO run ./chaos/cmd/chaosreport -in "$raw" -fuzz "$fuzz" -out "$out" -date "$date" || rc=1
echo "report: $out/report-$date.md"
exit $rc
