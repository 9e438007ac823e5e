// Package store holds the plain data types a storage adapter reads and
// writes: stored sessions, event log entries, artifacts, commands and the
// write operations one group commit carries. The Store interface itself is
// declared in package server, where it is used; adapters (internal/sqlite
// now, PostgreSQL later) import this package and protocol, nothing else of
// the server, so no adapter-specific assumption leaks into the service.
package store
