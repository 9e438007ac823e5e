// Package metrics is agentd's Prometheus endpoint: its counters, gauges
// and POST histogram, the Go runtime's and the process's figures, written
// in the Prometheus text exposition format, and the optional listener that
// serves them. The uploader and the command stream only call plain
// function hooks, so they do not import it.
//
// It does not use client_golang, as rein-server does: agentd runs in every
// sandbox, and linking client_golang (with its protobuf model) costs 2.5
// MiB of resident memory before a single series is registered (a program
// that only imports promhttp and collectors against one that does not),
// an eighth of agentd's 20 MiB budget, for eleven series and one
// histogram. Its tests parse the output with Prometheus's own parser
// (prometheus/common/expfmt), which stays a test dependency.
package metrics
