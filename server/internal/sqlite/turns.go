package sqlite

import (
	"context"
	"fmt"

	"github.com/rein-ai/rein/server/store"
)

// TurnDigests returns the session's recorded turn digests by end_pos.
func (s *Store) TurnDigests(ctx context.Context, id string) ([]store.TurnDigest, error) {
	var rows []struct {
		EndPos int64  `db:"end_pos"`
		TurnID string `db:"turn_id"`
		Digest []byte `db:"digest"`
		At     int64  `db:"recorded_at"`
	}
	if err := s.r.SelectContext(ctx, &rows, `SELECT end_pos, turn_id, digest, recorded_at FROM turn_digests WHERE session_id = ? ORDER BY end_pos`, id); err != nil {
		return nil, fmt.Errorf("read turn digests session=%s: %w", id, err)
	}
	out := make([]store.TurnDigest, len(rows))
	for i, r := range rows {
		if len(r.Digest) != 32 {
			return nil, fmt.Errorf("read turn digests session=%s end=%d: digest is %d bytes, want 32", id, r.EndPos, len(r.Digest))
		}
		out[i] = store.TurnDigest{TurnID: r.TurnID, EndPos: r.EndPos, Digest: [32]byte(r.Digest), At: r.At}
	}
	return out, nil
}

// EventsAfter returns a page of the session's event log: pos > after, at
// most limit entries, in order.
func (s *Store) EventsAfter(ctx context.Context, id string, after int64, limit int) ([]store.Event, error) {
	return s.readLog(ctx, id, after, limit)
}

func putTurnDigest(ctx context.Context, ex execer, op store.PutTurnDigest) error {
	d := op.Digest
	_, err := ex.ExecContext(ctx, `INSERT OR REPLACE INTO turn_digests (session_id, end_pos, turn_id, digest, recorded_at) VALUES (?, ?, ?, ?, ?)`,
		op.SessionID, d.EndPos, d.TurnID, d.Digest[:], d.At)
	if err != nil {
		return fmt.Errorf("put turn digest session=%s end=%d: %w", op.SessionID, d.EndPos, err)
	}
	return nil
}

// PendingPermissionSessions returns the sessions with a permission
// artifact that may be pending. Artifact bodies are canonical JSON (keys
// sorted, no spaces), so the two patterns match every pending permission;
// a match inside some other field's text only costs the server a decode.
func (s *Store) PendingPermissionSessions(ctx context.Context) ([]string, error) {
	var ids []string
	if err := s.r.SelectContext(ctx, &ids, `SELECT DISTINCT session_id FROM artifact_bodies WHERE body LIKE '%"type":"permission"%' AND body LIKE '%"status":"pending"%'`); err != nil {
		return nil, fmt.Errorf("find pending permissions: %w", err)
	}
	return ids, nil
}
