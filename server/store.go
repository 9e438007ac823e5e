package server

import "github.com/rein-ai/rein/server/store"

// Store is the persistence the service needs; see package store for the
// contract and storetest for the suite a backend must pass.
type Store = store.Store

// The data types a Store reads and writes, as package store names them.
type (
	StoredSession  = store.Session
	StoredEvent    = store.Event
	StoredArtifact = store.Artifact
	StoredCommand  = store.Command
	Snapshot       = store.Snapshot
	StoreOp        = store.Op
)
