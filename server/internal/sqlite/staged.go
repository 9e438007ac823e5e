package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/rein-ai/rein/server/store"
)

// Staging (store.Stager). AppendEvents inserts into staged_events, whose
// rowid order is commit order, and Unstage moves the table into events.
// Reads of a session's log read events, then its staged rows.
//
// events' primary key refused a position stored twice; staged_events has
// no index to refuse it with (one would cost a page per session again).
// So Commit checks positions itself: a session's appended positions must
// rise above the highest it holds. stagedTop remembers that highest
// position for every session with staged rows, so the check costs a map
// lookup; a session not in it reads its top from events' primary key
// once per Unstage. That read also finds the session's row: staged_events
// has no foreign key (migration 0009), so it is where staging to a missing
// session fails, once per session rather than once per row.

const (
	// ORDER BY session_id: each session's rows go into events together,
	// so the move writes each session's leaf page once.
	qUnstage     = `INSERT INTO events (session_id, pos, instance, agent_seq, body, body_id) SELECT session_id, pos, instance, agent_seq, body, body_id FROM staged_events ORDER BY session_id, pos`
	qClearStaged = `DELETE FROM staged_events`
	// qTopPos finds no row for a missing session: staged_events has no
	// foreign key to refuse its rows (migration 0009).
	qTopPos       = `SELECT (SELECT COALESCE(MAX(pos), 0) FROM events WHERE session_id = s.id) FROM sessions AS s WHERE s.id = ?`
	qDeleteStaged = `DELETE FROM staged_events WHERE session_id = ?`
	// qDeleteEventBodies deletes the bodies a session's rows name, staged
	// or not (migration 0012).
	qDeleteEventBodies = `DELETE FROM event_bodies WHERE id IN (SELECT body_id FROM events WHERE session_id = ?1 AND body_id IS NOT NULL UNION ALL SELECT body_id FROM staged_events WHERE session_id = ?1 AND body_id IS NOT NULL)`
	qPutEventBody      = `INSERT INTO event_bodies (body) VALUES (?)`
	qStagedTops        = `SELECT session_id, MAX(pos) AS top FROM staged_events GROUP BY session_id`
	qStagedEvents      = `SELECT e.pos, e.instance, e.agent_seq, COALESCE(b.body, e.body) AS body FROM staged_events AS e LEFT JOIN event_bodies AS b ON b.id = e.body_id WHERE e.session_id = ? AND e.pos > ? ORDER BY e.pos LIMIT ?`
	// qLogEvents reads a page of the log, each body from its row or from
	// event_bodies (migration 0012).
	qLogEvents = `SELECT e.pos, e.instance, e.agent_seq, COALESCE(b.body, e.body) AS body FROM events AS e LEFT JOIN event_bodies AS b ON b.id = e.body_id WHERE e.session_id = ? AND e.pos > ? ORDER BY e.pos LIMIT ?`
)

// loadStaged fills s.stagedTop at Open.
func (s *Store) loadStaged(ctx context.Context) error {
	var rows []struct {
		ID  string `db:"session_id"`
		Top int64  `db:"top"`
	}
	if err := s.w.SelectContext(ctx, &rows, qStagedTops); err != nil {
		return fmt.Errorf("read staged events: %w", err)
	}
	s.stagedTop = make(map[string]int64, len(rows))
	for _, r := range rows {
		s.stagedTop[r.ID] = r.Top
	}
	return nil
}

// StagedSessions implements store.Stager.
func (s *Store) StagedSessions(ctx context.Context) ([]string, error) {
	var ids []string
	if err := s.r.SelectContext(ctx, &ids, `SELECT DISTINCT session_id FROM staged_events`); err != nil {
		return nil, fmt.Errorf("read staged sessions: %w", err)
	}
	return ids, nil
}

// tops is one commit's view of the sessions' highest positions, merged
// into Store.stagedTop once the commit has succeeded.
type tops struct {
	s       *Store
	stmts   *stmtCache
	seen    map[string]int64 // appended in this commit (after its last Unstage)
	staged  map[string]bool  // staged in this commit (after its last Unstage)
	deleted map[string]bool
	// unstaged: the commit moved every staged row; stagedTop no longer
	// applies, events holds it all.
	unstaged bool
}

func newTops(s *Store, stmts *stmtCache) *tops {
	return &tops{s: s, stmts: stmts, seen: map[string]int64{}, staged: map[string]bool{}, deleted: map[string]bool{}}
}

// top returns the session's highest stored position, staged or not.
func (t *tops) top(ctx context.Context, id string) (int64, error) {
	if p, ok := t.seen[id]; ok {
		return p, nil
	}
	if p, ok := t.s.stagedTop[id]; ok && !t.unstaged && !t.deleted[id] {
		return p, nil
	}
	p, err := t.stmts.queryInt64(ctx, qTopPos, id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("append events: %w", notFound(id))
	}
	if err != nil {
		return 0, fmt.Errorf("read top position session=%s: %w", id, err)
	}
	return p, nil
}

// hasStaged reports whether the session has staged events.
func (t *tops) hasStaged(id string) bool {
	if t.staged[id] {
		return true
	}
	_, ok := t.s.stagedTop[id]
	return ok && !t.unstaged && !t.deleted[id]
}

// check refuses positions that do not rise above the session's highest.
func (t *tops) check(ctx context.Context, ae store.AppendEvents) error {
	if len(ae.Events) == 0 {
		return nil
	}
	top, err := t.top(ctx, ae.SessionID)
	if err != nil {
		return err
	}
	for _, e := range ae.Events {
		if e.Pos <= top {
			return fmt.Errorf("append events session=%s pos=%d: the log already reaches pos %d", ae.SessionID, e.Pos, top)
		}
		top = e.Pos
	}
	t.seen[ae.SessionID] = top
	return nil
}

func (t *tops) unstage(ctx context.Context, ex execer) error {
	if _, err := ex.ExecContext(ctx, qUnstage); err != nil {
		return fmt.Errorf("unstage events: %w", err)
	}
	if _, err := ex.ExecContext(ctx, qClearStaged); err != nil {
		return fmt.Errorf("unstage events: clear: %w", err)
	}
	t.unstaged = true
	clear(t.seen)
	clear(t.staged)
	return nil
}

func (t *tops) delete(id string) {
	t.deleted[id] = true
	delete(t.seen, id)
	delete(t.staged, id)
}

// committed merges the commit's view into the Store's.
func (t *tops) committed() {
	if t.unstaged {
		clear(t.s.stagedTop)
	}
	for id := range t.deleted {
		delete(t.s.stagedTop, id)
	}
	for id := range t.staged {
		t.s.stagedTop[id] = t.seen[id]
	}
}

// staged appends the session's staged rows with pos > after (at most
// limit) to out, read in tx (the same read transaction as the rows of
// events before them).
func stagedEvents(ctx context.Context, tx *sqlx.Tx, out []store.Event, id string, after int64, limit int) ([]store.Event, error) {
	var rows []eventRow
	if err := tx.SelectContext(ctx, &rows, qStagedEvents, id, after, limit); err != nil {
		return nil, fmt.Errorf("read staged events session=%s: %w", id, err)
	}
	for _, r := range rows {
		out = append(out, r.event())
	}
	return out, nil
}

type eventRow struct {
	Pos      int64  `db:"pos"`
	Instance string `db:"instance"`
	AgentSeq int64  `db:"agent_seq"`
	Body     []byte `db:"body"`
}

func (r eventRow) event() store.Event {
	return store.Event{Pos: r.Pos, Instance: r.Instance, AgentSeq: r.AgentSeq, Body: r.Body}
}

// readLog reads a page of the session's log, pos > after and at most limit
// entries (limit < 0: all), from events and then staged_events, in one
// read transaction so that an Unstage between the two reads cannot hide
// or repeat rows.
func (s *Store) readLog(ctx context.Context, id string, after int64, limit int) ([]store.Event, error) {
	tx, err := s.r.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read events session=%s: %w", id, err)
	}
	defer func() { _ = tx.Rollback() }()
	return readLogTx(ctx, tx, id, after, limit)
}

// readLogTx is readLog in the read transaction tx.
func readLogTx(ctx context.Context, tx *sqlx.Tx, id string, after int64, limit int) ([]store.Event, error) {
	var rows []eventRow
	if err := tx.SelectContext(ctx, &rows, qLogEvents, id, after, limit); err != nil {
		return nil, fmt.Errorf("read events session=%s after=%d: %w", id, after, err)
	}
	out := make([]store.Event, len(rows), len(rows)+16)
	for i, r := range rows {
		out[i] = r.event()
	}
	if limit >= 0 && len(out) >= limit {
		return out, nil
	}
	if len(out) > 0 {
		after = out[len(out)-1].Pos
	}
	rest := -1
	if limit >= 0 {
		rest = limit - len(out)
	}
	return stagedEvents(ctx, tx, out, id, after, rest)
}
