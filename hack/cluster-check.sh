#!/usr/bin/env bash
# Proves the harness's lifecycle on this machine: up from nothing, a second
# up refused, recovery after every harness process is SIGKILLed, and a down
# that leaves no process, mount, bridge, CNI/KUBE chain (kube-router's
# KUBE-ROUTER-*, KUBE-NWPLCY-* and KUBE-POD-FW-* included), kube-router
# ipset or kubepods cgroup.
# Leaves no cluster running.
set -euo pipefail
cd "$(dirname "$0")/.."
LC=./bin/localcluster
STATE=/var/lib/podgate-localcluster
fail() { echo "cluster-check: FAIL: $*" >&2; exit 1; }
leftovers() {
  local out=""
  pgrep -f "$STATE" >/dev/null && out+=" processes($(pgrep -f "$STATE" | tr '\n' ' '))"
  grep -q " $STATE" /proc/self/mountinfo && out+=" mounts"
  [ -e /sys/class/net/podgate0 ] && out+=" bridge"
  for t in filter nat mangle; do
    grep -qE '^:(KUBE|CNI)-' <<<"$(iptables-save -t $t 2>/dev/null)" && out+=" iptables-$t"
  done
  command -v ipset >/dev/null && ipset list -n 2>/dev/null | grep -qE '^(inet6:)?(KUBE-|kube-router)' && out+=" ipsets"
  ls -d /sys/fs/cgroup/*/kubepods >/dev/null 2>&1 && out+=" cgroups"
  [ -e /var/lib/cni/networks/podgate ] && out+=" ip-allocations"
  [ -e "$STATE" ] && out+=" state-dir"
  echo "$out"
}
$LC down >/dev/null
$LC up
grep -q 'node: .* Ready' <<<"$($LC status)" || fail "node not Ready after up"
rc=0; $LC up >/dev/null 2>&1 || rc=$?
[ $rc = 3 ] || fail "second up was not refused (exit $rc)"
echo "cluster-check: second up refused"
# A pod running, so that SIGKILL leaves shims, mounts and cgroups behind.
KUBECTL=${XDG_CACHE_HOME:-$HOME/.cache}/podgate/bin/k8s-v1.33.13/kubectl
KUBECONFIG=$($LC kubeconfig) $KUBECTL run leftover --image=localhost/podgate-busybox:local --image-pull-policy=Never --restart=Never --command -- sleep 3600 >/dev/null
KUBECONFIG=$($LC kubeconfig) $KUBECTL wait --for=condition=Ready pod/leftover --timeout=60s >/dev/null
pkill -KILL -f "$STATE" || true
echo "cluster-check: SIGKILLed every harness process; left behind:$(leftovers)"
$LC up
grep -q 'node: .* Ready' <<<"$($LC status)" || fail "node not Ready after recovery"
echo "cluster-check: up recovered after SIGKILL"
# The killed pod's address must not stay allocated: leaked addresses once
# filled the /24 so that no pod could start. At most the restarted pod holds one.
ips=0
[ -d "$STATE/cni/ipam/podgate" ] && ips=$(find "$STATE/cni/ipam/podgate" -maxdepth 1 -name '10.*' | wc -l)
[ "$ips" -le 1 ] || fail "$ips pod addresses allocated after recovery, want at most 1"
echo "cluster-check: $ips pod address(es) allocated after recovery"
$LC down
left=$(leftovers)
[ -z "$left" ] || fail "down left:$left"
echo "cluster-check: down left nothing behind"
