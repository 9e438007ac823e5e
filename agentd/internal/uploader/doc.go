// Package uploader posts a sandbox's ReinEvents to POST /sessions/:id/events
// in order: it stamps the envelope (agentSeq, ts), cuts an event that would
// break the protocol's size limits so that it is stored rather than
// refused (fit.go), batches, retries with
// backoff on network errors and 5xx (the same batch with the same agentSeqs,
// so the server's dedupe makes retries idempotent), sends heartbeats, and
// holds a bounded queue that blocks producers when full rather than dropping
// or growing. It imports protocol and backoff.
package uploader
