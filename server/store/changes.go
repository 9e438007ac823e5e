package store

import "context"

// ChangeBatch is what one request's commit published on a session's
// artifact stream: the records (Body, encoded by the server) that took the
// session from revision FromRev to ToRev. Other replicas relay exactly
// these to their followers, deltas and all, instead of whole artifacts.
type ChangeBatch struct {
	FromRev int64
	ToRev   int64
	// At is when it was committed, in milliseconds since the epoch: the
	// store may forget batches older than a few minutes.
	At   int64
	Body []byte
}

// PutChanges records a change batch. Only a store that implements
// ChangeLog is given it.
type PutChanges struct {
	SessionID string
	Batch     ChangeBatch
}

func (PutChanges) storeOp() {}

// ChangeLog is implemented by a shared store (Shared) that keeps recent
// change batches for a while. A reader chains them from the revision its
// followers have (each batch's FromRev is the previous one's ToRev); a
// broken chain means batches were forgotten, and the reader falls back
// to the artifacts themselves (ArtifactsSince), which is exact too.
type ChangeLog interface {
	// ChangeBatches returns the session's batches with after <= FromRev <
	// before, in FromRev order, ending with the first one that brings
	// their bodies to maxBytes or over (the first batch whatever its
	// size), so a reader far behind never holds minutes of a busy
	// session's records at once: it falls back to artifacts a page at a
	// time.
	ChangeBatches(ctx context.Context, id string, after, before int64, maxBytes int) ([]ChangeBatch, error)
}
