// Package loadgen holds what the measuring commands (rein-bench, rein-soak)
// share: keep-alive HTTP load, process figures read from /proc, the
// machine and its load average, agent turns as ReinEvents, and the figures
// written to bench.json.
package loadgen
