// Package scale measures how podgate's cost grows with the pool: three
// replicas under podgate's real ServiceAccount and RBAC (from deploy/), so
// that API Priority and Fairness applies to them, serve a default profile
// whose pods go to KWOK's simulated nodes, at pool sizes of 20, 500 and
// 5,000 idle pods on 100 nodes. At each size it measures the time to fill
// the pool, login latency and its claim phase, each replica's RSS and
// goroutines, API requests per login (reads and writes apart, from
// client-go's metrics), the leader's sync pass, the API server's CPU and
// APF's queueing; then a burst of logins spread over the replicas at the
// largest size. `make bench-scale` runs it and writes the report, CSV,
// plots and profiles under bench/results.
//
// Exec into a simulated pod runs a local process (see localcluster's
// KWOK), so podgate's prepared streams and pod-side wrapper run for real;
// container start and pod networking are not simulated.
package scale
