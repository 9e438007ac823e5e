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
	// ChangeBatches returns the session's batches with FromRev >= after,
	// in FromRev order.
	ChangeBatches(ctx context.Context, id string, after int64) ([]ChangeBatch, error)
}
