// Package metrics is agentd's Prometheus adapter: its collectors, in a
// registry of its own, and the optional listener that serves them. It may
// import protocol and client_golang; the uploader and the command stream
// only call plain function hooks, so they do not import it.
package metrics
