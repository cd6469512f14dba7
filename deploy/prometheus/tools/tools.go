//go:build tools

// Package tools pins the version of promtool that deploy/prometheus/test.sh
// builds. It is a module of its own so that Prometheus and its many
// dependencies never enter podgate's go.mod.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
