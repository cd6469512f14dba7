#!/usr/bin/env bash
# Checks and unit-tests podgate's Prometheus rules with promtool.
#
# promtool is built from the Go module proxy through the nested module in
# tools/ (so Prometheus never enters podgate's own go.mod) and cached by
# version, so only the first run pays for the build (a few minutes on 2 cores).
#
# Usage: deploy/prometheus/test.sh            check + unit-test every rule
#        PROMTOOL=/path/to/promtool test.sh  use an existing promtool
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(cd "$here/tools" && go list -m -f '{{.Version}}' github.com/prometheus/prometheus)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/podgate/bin/promtool-$version"
promtool="${PROMTOOL:-$cache/promtool}"

if [[ ! -x "$promtool" ]]; then
	echo "building promtool $version into $cache (first run only)" >&2
	mkdir -p "$cache"
	# Build to a temporary name and rename, so an interrupted build never
	# leaves a half-written binary that a later run would trust.
	(cd "$here/tools" && CGO_ENABLED=0 go build -trimpath -o "$cache/promtool.tmp" github.com/prometheus/prometheus/cmd/promtool)
	mv "$cache/promtool.tmp" "$cache/promtool"
fi

cd "$here"
"$promtool" check rules rules/*.yaml
"$promtool" test rules tests/*.yaml

# The PrometheusRule object must wrap exactly these rules.
generated="$(mktemp)"
trap 'rm -f "$generated"' EXIT
./gen-prometheusrule.sh "$generated"
if ! diff -u ../monitoring/prometheusrule.yaml "$generated"; then
	echo "deploy/monitoring/prometheusrule.yaml is stale: run deploy/prometheus/gen-prometheusrule.sh" >&2
	exit 1
fi
echo "prometheusrule.yaml is current"
