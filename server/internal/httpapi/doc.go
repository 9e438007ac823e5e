// Package httpapi is the HTTP adapter of rein-server: the routes of
// PROTOCOL.md, the one table mapping wire error codes to HTTP statuses, JSON
// error bodies, request size limits, and SSE stream writing with a deadline
// per write and a ping comment while idle. It also owns the HTTP side of
// security: who may call which route (auth.go: the client token, sandbox
// tokens looked up by hash through the Service), signed short-lived stream
// tickets for EventSource (ticket.go), and CORS (cors.go). discovery.go
// serves the public manifest GET /.well-known/rein.json, whose route list
// and feature flags follow from what the router really serves.
//
// The routes call the small Service interface declared here; Domain
// (service.go) adapts the domain server (package server) to it. SSE is
// this package's alone: it frames the domain's snapshots and command
// replays, and each live change record from the hub once (sse.go's frame
// through hub.Message.Wire), the bytes shared by every subscriber of that
// record. It knows nothing about storage or the reducer.
//
// It imports protocol, server (the domain), internal/hub (streams are hub
// subscribers) and go-sse (the SSE wire format).
package httpapi
