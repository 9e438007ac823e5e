// Package commandstream holds a sandbox's GET /sessions/:id/commands SSE
// stream open: it owns the reconnect loop (capped exponential backoff with
// jitter that never gives up and resets after a healthy connection), resumes
// with Last-Event-ID, treats a silent stream as dead, and hands each command
// to its handler exactly once. It imports protocol, go-sse (the reader only)
// and backoff.
package commandstream
