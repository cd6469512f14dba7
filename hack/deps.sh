#!/usr/bin/env bash
# make deps: installs the Debian packages of every missing host tool on the
# one list, internal/testenv/hosttools/tools.tsv, read through the hosttools
# command (the tests read the same list through hosttools.Require). Needs
# root when anything is missing; says what to install otherwise.
#
# make hostcheck (`hack/deps.sh check`): the pre-flight check that `make
# test` runs after deps: fails naming each missing tool and its package.
#
# With KUBECONFIG set, the tests use that cluster, and the local cluster's
# own tools (containerd, runc, ...) are left out: Debian's containerd could
# clash with the container runtime already there.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
uses=tests,cluster
if [ -n "${KUBECONFIG:-}" ]; then
  uses=tests
fi
hosttools() { $GO run ./internal/testenv/hosttools/cmd/hosttools -for "$uses" "$@"; }
if [ "${1:-}" = check ]; then
  hosttools check
  exit
fi
# Captured first, so that a failing hosttools fails the script.
missing=$(hosttools missing)
[ -z "$missing" ] && exit 0
mapfile -t need <<<"$missing"
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: apt-get install ${need[*]}" >&2
  exit 1
fi
echo "deps: installing ${need[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
