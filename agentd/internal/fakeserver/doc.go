// Package fakeserver is a test double of the Rein server's two sandbox
// routes (GET /sessions/:id/commands and POST /sessions/:id/events) as
// PROTOCOL.md specifies them, with fault injection: dropped streams, 5xx,
// 404, slow answers, duplicate redeliveries, superseded instances. It is
// imported by tests only.
package fakeserver
