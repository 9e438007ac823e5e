package store

import "context"

// TurnDigest is the digest a session's event log had when a turn ended
// (see server/README.md, "Turn digests"), recorded so that a later change
// to the stored events shows.
type TurnDigest struct {
	TurnID string
	// EndPos is the log position of the event that ended the turn.
	EndPos int64
	Digest [32]byte
	// At is when it was recorded, in milliseconds since the epoch.
	At int64
}

// PutTurnDigest records a turn's digest. Only a store that implements
// TurnDigestStore is given it.
type PutTurnDigest struct {
	SessionID string
	Digest    TurnDigest
}

func (PutTurnDigest) storeOp() {}

// TurnDigestStore is implemented by a store that records turn digests
// (PutTurnDigest in Commit). Without it, GET /sessions/:id/turns computes
// digests from the log it serves, which proves nothing.
type TurnDigestStore interface {
	// TurnDigests returns the session's recorded digests by EndPos.
	TurnDigests(ctx context.Context, id string) ([]TurnDigest, error)
}

// EventPager is implemented by a store that reads a page of a session's
// event log; without it the server reads the whole log and cuts it.
type EventPager interface {
	// EventsAfter returns the session's events with pos > after, at most
	// limit, in pos order.
	EventsAfter(ctx context.Context, id string, after int64, limit int) ([]Event, error)
}

// PendingPermissionFinder is implemented by a store that can say cheaply
// which sessions may hold a pending permission request; without it the
// server reads every session's artifacts at start to fill the inbox.
type PendingPermissionFinder interface {
	// PendingPermissionSessions returns the ids of sessions with a stored
	// permission artifact whose status may be "pending": a superset (the
	// server decodes and checks).
	PendingPermissionSessions(ctx context.Context) ([]string, error)
}
