// Package codex drives OpenAI Codex's `codex app-server` (JSON-RPC 2.0,
// one JSON object per line over stdio) and translates between it and Rein:
// prompt, abort and permission_response commands become turn/start,
// turn/interrupt and answers to the app-server's approval requests; its
// item, plan, token-usage and turn notifications become ReinEvents. It
// imports protocol only.
//
// The JSON-RPC client is hand-written (rpc.go): the app-server's dialect
// is plain newline-delimited JSON-RPC without Content-Length framing, and
// the adapter wants every message, request, answer and notification alike,
// in arrival order on one goroutine so that the mapping needs no locks and
// a recorded transcript replays deterministically. The Go JSON-RPC
// libraries either frame differently or dispatch handlers concurrently.
package codex
