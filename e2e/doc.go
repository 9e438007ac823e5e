// Package e2e runs Rein as users run it: the real rein-server, agentd and
// agents as separate processes on loopback, driven over HTTP and SSE, with
// faults injected between them (a TCP proxy that pauses and cuts, kill -9,
// restarts on the same database).
//
// It is a black box: it builds the binaries from the other modules but
// imports only protocol, for the wire types. The harness (this package's
// non-test files) is shared by the test suite and by cmd/rein-bench.
package e2e
