// Package app assembles rein-server from its layers, the way the command
// and the tests run it: it opens the SQLite store (internal/sqlite),
// starts the domain server (package server) on it, puts the HTTP API
// (internal/httpapi) with the web view (internal/web) in front, and
// listens. Close takes it down in the order the style guide asks: HTTP
// shutdown with a deadline while every stream is ended, then the writer,
// then the store.
//
// It is the only package that knows every layer; the domain imports none
// of them. It imports server, its store contract and internal packages,
// and the standard library.
package app
