package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/rein-ai/rein/server/store"
)

// qPutTurnDigest replaces a digest at the same position: the writer
// records a turn's end once, and a retried commit writes the same row.
const qPutTurnDigest = `INSERT INTO turn_digests (session_id, end_pos, turn_id, digest, recorded_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (session_id, end_pos) DO UPDATE SET turn_id = excluded.turn_id, digest = excluded.digest, recorded_at = excluded.recorded_at`

// TurnDigests returns the session's recorded turn digests by end_pos
// (store.TurnDigestStore).
func (s *Store) TurnDigests(ctx context.Context, id string) ([]store.TurnDigest, error) {
	rows, _ := s.pool.Query(ctx, `SELECT end_pos, turn_id, digest, recorded_at FROM turn_digests WHERE session_id = $1 ORDER BY end_pos`, id)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.TurnDigest, error) {
		var (
			d      store.TurnDigest
			digest []byte
		)
		if err := row.Scan(&d.EndPos, &d.TurnID, &digest, &d.At); err != nil {
			return d, err
		}
		if len(digest) != len(d.Digest) {
			return d, fmt.Errorf("end=%d: digest is %d bytes, want %d", d.EndPos, len(digest), len(d.Digest))
		}
		d.Digest = [32]byte(digest)
		return d, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read turn digests session=%s: %w", id, err)
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
	var (
		out  []store.Event
		more bool
	)
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		// The sizes first (octet_length of a body kept out of line is
		// read from its header), then the bodies of exactly the page's
		// entries, in the same snapshot.
		upTo, m, err := cutPage(ctx, tx, `SELECT pos, octet_length(body) FROM events WHERE session_id = $1 AND pos > $2 ORDER BY pos LIMIT $3`, id, after, limit, maxBytes)
		if err != nil {
			return err
		}
		more = m
		rows, _ := tx.Query(ctx, `SELECT pos, instance, agent_seq, body FROM events WHERE session_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos`, id, after, upTo)
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Event, error) {
			var e store.Event
			err := row.Scan(&e.Pos, &e.Instance, &e.AgentSeq, &e.Body)
			return e, err
		})
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("read events session=%s after=%d: %w", id, after, err)
	}
	return out, more, nil
}

// PendingPermissionSessions returns the sessions with a permission
// artifact that may be pending (store.PendingPermissionFinder). Artifact
// bodies are canonical JSON (keys sorted, no spaces) and a permission's
// status is never appended, only replaced, so the two patterns match
// every pending permission; a match inside some other field's text only
// costs the server a decode.
func (s *Store) PendingPermissionSessions(ctx context.Context) ([]string, error) {
	rows, _ := s.pool.Query(ctx, `SELECT DISTINCT session_id FROM artifacts WHERE body LIKE '%"type":"permission"%' AND body LIKE '%"status":"pending"%'`)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("find pending permissions: %w", err)
	}
	return ids, nil
}
