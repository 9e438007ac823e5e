package store

import (
	"context"

	"github.com/rein-ai/rein/protocol"
)

// Store is the persistence rein-server needs.
//
// Reads may be called from any goroutine, concurrently with Commit. The
// server calls LoadSessions, SandboxTokens and Events to rebuild its
// in-memory view, and Commit for every write.
//
// Errors: a missing session is an error carrying protocol.CodeNotFound
// (protocol.CodeOf finds it through wrapping); any other error means the
// backend failed, and the server answers 503 and retries later.
type Store interface {
	// Session returns one session record.
	Session(ctx context.Context, id string) (protocol.Session, error)
	// Sessions lists session records oldest first (createdAt, then the
	// order they were created in); project "" means all.
	Sessions(ctx context.Context, project string) ([]protocol.Session, error)
	// Artifacts returns a session's artifacts ordered by seq, every
	// pending append merged in (see AppendArtifacts). A missing session is
	// CodeNotFound; a session without artifacts is an empty list.
	Artifacts(ctx context.Context, id string) ([]Artifact, error)
	// ArtifactsSince returns exactly the artifacts with rev > after, in
	// rev order, and the session's Rev, read at one point in time (one
	// read transaction) so Rev covers exactly those artifacts. after may
	// be above Rev (a client of a database restored from a backup): the
	// result then has no artifacts, and the server decides what to do.
	ArtifactsSince(ctx context.Context, id string, after int64) (Snapshot, error)
	// ArtifactsPage is one page of ArtifactsSince: the artifacts with
	// rev > after, the lowest revs first, and the session's Rev, read in
	// one read transaction. The page holds at most limit (> 0) of them
	// and stops before the one that would take its bodies past maxBytes
	// (counted as stored: the body and the bytes appended to it), but
	// holds one at least (PageCut); maxBytes <= 0 bounds the count alone.
	// More says whether artifacts with rev <= Rev were left for the next
	// page: a page without More holds every one with after < rev <= Rev
	// (a page shorter than limit may have More, cut by its bytes).
	// Replays read a session page by page, each page in its own short
	// transaction, so neither the server's memory nor a long read (which
	// keeps SQLite's WAL from being reset) grows with the session or its
	// artifacts' sizes.
	ArtifactsPage(ctx context.Context, id string, after int64, limit, maxBytes int) (Snapshot, error)
	// ArtifactsBySeq returns the session's artifacts with seq > after,
	// ordered by seq, every pending append merged in, cut as
	// ArtifactsPage cuts (at most limit > 0, within maxBytes but one at
	// least): Artifacts page by page. more says whether artifacts were
	// left for the next page. A missing session is CodeNotFound.
	ArtifactsBySeq(ctx context.Context, id string, after int64, limit, maxBytes int) (list []Artifact, more bool, err error)
	// Commands returns the session's commands with after < id <= upTo in
	// id order.
	Commands(ctx context.Context, id string, after, upTo int64) ([]Command, error)
	// CommandByKey returns the session's command stored with
	// Idempotency-Key key (Key set), and false when there is none (a
	// missing session included).
	CommandByKey(ctx context.Context, id, key string) (Command, bool, error)
	// LoadSessions returns every session with its internal state, oldest
	// first; Instances of each in the order they first held the stream.
	LoadSessions(ctx context.Context) ([]Session, error)
	// Events returns a session's event log in pos order (empty for a
	// session without events or none at all).
	Events(ctx context.Context, id string) ([]Event, error)
	// Commit applies ops in order in one transaction: every op is stored
	// or none is, and once Commit returns nil the writes are durable as
	// the backend is configured to make them (the server answers 2xx
	// after it).
	Commit(ctx context.Context, ops []Op) error
	// SandboxTokens returns each session's sandbox token hash (SHA-256)
	// by session id; sessions without a token are absent.
	SandboxTokens(ctx context.Context) (map[string][32]byte, error)
	// Ping checks that the backend answers a read.
	Ping(ctx context.Context) error
	// Close releases the backend. The server closes only a store it
	// opened itself.
	Close() error
}

// Exclusive is implemented by a Store whose database one server process
// owns alone (SQLite refuses a second process on the same file). Then no
// sandbox is connected to any session when the server starts, so it marks
// every live and idle session disconnected at once. A backend shared by
// several replicas must not implement it (or return false): a session's
// sandbox may be connected to another replica, and such sessions time out
// by their heartbeat deadline instead.
type Exclusive interface {
	Exclusive() bool
}

// Shared is implemented by a Store that several server processes use at
// once (PostgreSQL replicas). Each process caches the sessions and learns
// of the others' commits through Watch; its commits carry Expect ops, so
// a cache that missed a change costs a retry, never a lost write.
type Shared interface {
	// LoadSession returns one session with its internal state (as
	// LoadSessions) and its sandbox token hash (nil when it has none); a
	// missing session is CodeNotFound.
	LoadSession(ctx context.Context, id string) (Session, *[32]byte, error)
	// Watch calls changed with the ids of sessions other processes
	// committed changes to, soon after each commit, until ctx ends; then
	// it returns. changed(nil) means changes may have been missed (at the
	// start, and after the backend lost its connection): any session may
	// have changed. changed runs on Watch's goroutine, one call at a
	// time.
	Watch(ctx context.Context, changed func(ids []string)) error
	// SessionVersions returns the id, Version and CreatedAt of at most
	// limit (> 0) sessions, those whose id sorts after after ("" for the
	// first page) in the database's order of ids, in that order; a page
	// shorter than limit is the last. It is a page of the sweep: a
	// process compares its cache with the database through it, now and
	// then, to find the changes whose announcements Watch never passed
	// on, so it reads no more of a row than tells whether it changed.
	SessionVersions(ctx context.Context, after string, limit int) ([]SessionVersion, error)
}

// SessionVersion names the state of a session row: it changed if its
// Version did, or its CreatedAt (a session deleted and created again
// under its id counts its Version from 0 again).
type SessionVersion struct {
	ID        string
	Version   int64
	CreatedAt int64
}

// Stager is implemented by a Store whose AppendEvents land in a staging
// table first: appended at its one end whatever the session, so a commit
// of many sessions' single events writes a page or two, where the event
// log (ordered by session) takes a page per session. The staged events
// are part of the log from their commit on: Events and the other log
// reads return them after the log's own. An Unstage op moves them all
// into the log, one page per session for everything staged since.
//
// The server uses the staging table as its record of what it has not
// materialised yet (see server/materialise.go): StagedSessions after a
// crash names the sessions whose artifacts may lag their log.
type Stager interface {
	// StagedSessions returns the sessions with staged events.
	StagedSessions(ctx context.Context) ([]string, error)
}

// WriteChecker is implemented by a Store that can check whether writes
// succeed without changing what it holds: a write that needs new space,
// undone at once. While commits fail (a full disk), the server calls it
// now and then to find out, without waiting for a client, that writing
// works again; /healthz reports the outcome. A Store without it recovers
// on the next successful Commit only.
type WriteChecker interface {
	CheckWrite(ctx context.Context) error
}
