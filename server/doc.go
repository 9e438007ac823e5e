// Package server is rein-server: the central service that sessions,
// sandboxes (agentd) and clients talk to over HTTP and SSE.
//
// New starts a Server listening on Options.Host:Port. The Go API mirrors the
// reference's programmatic API (createServer, port, store, createSession,
// getSession, getSessions, close).
//
// Inside, the flow is validate -> store -> reduce -> publish:
//   - internal/httpapi decodes and validates requests (protocol decoders)
//     and maps wire error codes to HTTP statuses;
//   - one writer goroutine (writer.go) owns every mutation: it groups the
//     requests waiting for it into one transaction (group commit), folds
//     events through the reducer, stores the event log, artifacts and
//     session rows, and publishes to the hub only after the commit;
//   - internal/hub fans pre-encoded messages out to stream subscribers,
//     dropping any subscriber that cannot keep up;
//   - the storage contract is package store (Store, its ops and the
//     storetest conformance suite); internal/sqlite and internal/postgres
//     implement it.
//
// It imports protocol, reducer and its internal packages.
package server
