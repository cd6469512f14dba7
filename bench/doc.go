// Package bench measures podgate end to end on a real cluster: a Go SSH
// client that times each connection's phases on one monotonic clock, the
// scenarios of `make bench` (warm and cold sequential attaches, bursts, a
// client-go QPS/burst sweep, sustained Poisson arrivals, memory per idle
// session and data throughput), their statistics, and the Markdown report,
// CSV and plots written under bench/results.
//
// Every scenario runs its own podgate process (internal/testenv/podgatetest) in
// its own namespace, so runs never interfere; benchmarks report figures and
// never assert them.
package bench
