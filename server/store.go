package server

import (
	"context"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/store"
)

// Store is the persistence the service needs. Reads may be called from any
// goroutine; LoadSessions, Events and Commit are called by the writer
// goroutine only, which is the single writer. Commit applies its ops in one
// transaction: all or nothing. A missing session is an error with code
// protocol.CodeNotFound.
type Store interface {
	Session(ctx context.Context, id string) (protocol.Session, error)
	Sessions(ctx context.Context, project string) ([]protocol.Session, error)
	// Artifacts returns a session's artifacts ordered by seq.
	Artifacts(ctx context.Context, id string) ([]StoredArtifact, error)
	// ArtifactsSince returns the artifacts with rev > after in rev order,
	// and the session rev, from one read transaction.
	ArtifactsSince(ctx context.Context, id string, after int64) (Snapshot, error)
	// Commands returns the commands with after < id <= upTo in id order.
	Commands(ctx context.Context, id string, after, upTo int64) ([]StoredCommand, error)
	LoadSessions(ctx context.Context) ([]StoredSession, error)
	// Events returns a session's event log in order.
	Events(ctx context.Context, id string) ([]StoredEvent, error)
	Commit(ctx context.Context, ops []StoreOp) error
	// SandboxTokens returns each session's sandbox token hash (SHA-256)
	// by session id.
	SandboxTokens(ctx context.Context) (map[string][32]byte, error)
	Ping(ctx context.Context) error
	Close() error
}

// The data types a Store reads and writes. They are aliases of the
// internal/store types so that adapters inside this module (SQLite now,
// PostgreSQL later) and code outside it name the same types.
type (
	StoredSession  = store.Session
	StoredEvent    = store.Event
	StoredArtifact = store.Artifact
	StoredCommand  = store.Command
	Snapshot       = store.Snapshot
	StoreOp        = store.Op
)
