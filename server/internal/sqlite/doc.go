// Package sqlite is the SQLite adapter of the server's Store: embedded
// migrations, WAL, one writer connection and a reader pool. It uses
// modernc.org/sqlite (pure Go, no cgo) through sqlx.
//
// It imports protocol and server/store only. Everything SQLite-specific
// (DSN pragmas, the in-memory mode, SQL dialect) stays in here.
package sqlite
