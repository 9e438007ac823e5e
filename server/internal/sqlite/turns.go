package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jmoiron/sqlx"

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

// EventsAfter returns a page of the session's event log: pos > after, in
// order, cut at limit entries and maxBytes of bodies (store.PageCut), and
// whether entries were left after it (store.EventPager).
func (s *Store) EventsAfter(ctx context.Context, id string, after int64, limit, maxBytes int) ([]store.Event, bool, error) {
	if limit <= 0 {
		return nil, false, fmt.Errorf("read events session=%s: limit %d: must be positive", id, limit)
	}
	tx, err := s.r.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, false, fmt.Errorf("read events session=%s: %w", id, err)
	}
	defer func() { _ = tx.Rollback() }()
	sizes, err := logSizes(ctx, tx, id, after, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("read events session=%s after=%d: %w", id, after, err)
	}
	n := store.PageCut(sizes, limit, maxBytes)
	if n == 0 {
		return nil, false, nil
	}
	// Exactly the n entries sized above: the same transaction sees the
	// same rows of events and staged_events.
	list, err := readLogTx(ctx, tx, id, after, n)
	return list, n < len(sizes), err
}

// logSizes returns the body sizes of the session's first limit log
// entries with pos > after, from events and then staged_events as
// readLogTx reads them. octet_length reads a length from the record's
// header, so no body is loaded.
func logSizes(ctx context.Context, tx *sqlx.Tx, id string, after int64, limit int) ([]int64, error) {
	type sized struct {
		Pos  int64 `db:"pos"`
		Size int64 `db:"n"`
	}
	var rows []sized
	if err := tx.SelectContext(ctx, &rows, `SELECT e.pos, COALESCE(octet_length(b.body), octet_length(e.body)) AS n FROM events AS e LEFT JOIN event_bodies AS b ON b.id = e.body_id WHERE e.session_id = ? AND e.pos > ? ORDER BY e.pos LIMIT ?`, id, after, limit); err != nil {
		return nil, err
	}
	if len(rows) < limit {
		from := after
		if len(rows) > 0 {
			from = rows[len(rows)-1].Pos
		}
		var staged []sized
		if err := tx.SelectContext(ctx, &staged, `SELECT e.pos, COALESCE(octet_length(b.body), octet_length(e.body)) AS n FROM staged_events AS e LEFT JOIN event_bodies AS b ON b.id = e.body_id WHERE e.session_id = ? AND e.pos > ? ORDER BY e.pos LIMIT ?`, id, from, limit-len(rows)); err != nil {
			return nil, fmt.Errorf("staged: %w", err)
		}
		rows = append(rows, staged...)
	}
	sizes := make([]int64, len(rows))
	for i, r := range rows {
		sizes[i] = r.Size
	}
	return sizes, nil
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
