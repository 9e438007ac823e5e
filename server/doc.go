// Package server is the domain of rein-server: sessions, the commands
// clients send to sandboxes, the events sandboxes post, and the artifacts
// the reducer folds them into, with the change records that streams carry.
//
// The layers point one way, inward to this package:
//
//	cmd/rein-server -> app -> internal/httpapi (+ internal/web) -> server -> store
//	                      \-> internal/sqlite, internal/postgres -----------> store
//
// This package imports no adapter: no HTTP, no SSE, no SQLite. New takes
// the store it is given (Options.Store: package store is the contract,
// internal/sqlite and internal/postgres implement it) and starts the
// writer; package app opens the SQLite or PostgreSQL store, puts
// internal/httpapi in front and listens.
//
// Inside, the flow is validate -> store -> reduce -> publish:
//   - adapters decode and validate requests with the protocol decoders and
//     call the Go API (CreateSession, SendCommand, Ingest, ...);
//   - one writer goroutine (writer.go, requests.go) owns every mutation:
//     it groups the requests waiting for it into one transaction (group
//     commit), folds events through the reducer (status.go holds the
//     session status rules, artifacts.go the storage policy), and
//     publishes change records to internal/hub only after the commit;
//   - feeds.go gives a stream its starting point (a snapshot, a command
//     replay) and a hub subscription for the live change records; the
//     adapter frames both for its wire (internal/httpapi: SSE, each live
//     record framed once and shared by every subscriber).
//
// It imports protocol, reducer, store and internal/hub (and the standard
// library).
package server
