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
	// EventsAfter returns the session's events with pos > after, in pos
	// order, read in one read transaction: at most limit (> 0) of them,
	// stopping before the one that would take their bodies past maxBytes
	// but holding one at least (PageCut); maxBytes <= 0 bounds the count
	// alone. The sizes are read before the bodies, so only the page's
	// bodies are loaded: an event is up to protocol.MaxEventBytes, and a
	// page of a count alone could hold gigabytes. more says whether
	// events were left after the page's last; a page shorter than limit
	// may have more (cut by its bytes). A missing session has no events.
	EventsAfter(ctx context.Context, id string, after int64, limit, maxBytes int) (list []Event, more bool, err error)
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
