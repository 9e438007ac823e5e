package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/rein-ai/rein/server/store"
)

// The statements Commit runs. pgx prepares each once per connection and
// caches it (its default exec mode). The ones named for many rows take
// arrays, one element per row (see segment).
const (
	qExpect        = `SELECT rein_expect($1::text[], $2::bigint[], $3::bigint[])`
	qCreateSession = `INSERT INTO sessions (id, status, summary, project, created_at, last_heartbeat) VALUES ($1, $2, $3, $4, $5, $6)`
	qDeleteSession = `DELETE FROM sessions WHERE id = $1`
	qPutArtifact   = `INSERT INTO artifacts (session_id, seq, rev, body) VALUES ($1, $2, $3, $4) ON CONFLICT (session_id, seq) DO UPDATE SET rev = excluded.rev, body = excluded.body, appended = 0`
	qDropAppends   = `DELETE FROM artifact_appends WHERE session_id = $1 AND seq = $2`
	// qPutArtifactHead keeps the artifact's appends and their length
	// (store.PutArtifactHeads); a missing artifact rolls the commit back.
	qPutArtifactHead = `WITH u AS (
	UPDATE artifacts SET rev = $3, body = $4 WHERE session_id = $1 AND seq = $2 RETURNING 1
)
SELECT rein_expect_all(CASE WHEN EXISTS (SELECT FROM u) THEN '{}'::text[] ELSE ARRAY[$1 || ' seq=' || $2] END, 'artifact not stored')`
	qAddCommand      = `INSERT INTO commands (session_id, id, body, created_at, idem_key) VALUES ($1, $2, $3, $4, NULLIF($5, ''))`
	qAddInstance     = `INSERT INTO sandbox_instances (session_id, instance, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
	qSetSandboxToken = `INSERT INTO sandbox_tokens (session_id, hash, created_at) VALUES ($1, $2, $3) ON CONFLICT (session_id) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at`

	qInsertEvents = `INSERT INTO events (session_id, pos, instance, agent_seq, body) SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bytea[])`
	qPutChanges   = `INSERT INTO change_batches (session_id, from_rev, to_rev, at, body) SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bytea[])`
	// qUpdateSessions and qAppendRevs name the rows that were not there
	// (rein_expect_all), which rolls the commit back. rein_expect_one,
	// which the one-row statements called, stays in the schema: replicas
	// of an older build still call it during a rolling upgrade.
	qUpdateSessions = `WITH v AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[])
		AS v(id, status, summary, last_heartbeat, rev, last_command_id, current_instance, acked_command_id, version, stream_epoch)
), u AS (
	UPDATE sessions s SET status = v.status, summary = v.summary, last_heartbeat = v.last_heartbeat, rev = v.rev,
		last_command_id = v.last_command_id, current_instance = v.current_instance, acked_command_id = v.acked_command_id,
		version = v.version, stream_epoch = v.stream_epoch
	FROM v WHERE s.id = v.id RETURNING s.id
)
SELECT rein_expect_all(ARRAY(SELECT id FROM v EXCEPT SELECT id FROM u), 'update session')`
	qAppendRevs = `WITH v AS (
	SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS v(session_id, seq, rev, bytes)
), u AS (
	UPDATE artifacts a SET rev = v.rev, appended = a.appended + v.bytes
	FROM v WHERE a.session_id = v.session_id AND a.seq = v.seq RETURNING a.session_id, a.seq
)
SELECT rein_expect_all(ARRAY(SELECT session_id || ' seq=' || seq FROM (SELECT session_id, seq FROM v EXCEPT SELECT session_id, seq FROM u) AS m), 'artifact not stored')`
	// qAppendTexts numbers each artifact's new appends after its stored
	// ones, in the order given: the statement does not see its own rows,
	// so MAX(n) is the stored highest and row_number counts the new ones.
	qAppendTexts = `INSERT INTO artifact_appends (session_id, seq, n, field, text)
SELECT v.session_id, v.seq,
	COALESCE((SELECT MAX(a.n) FROM artifact_appends a WHERE a.session_id = v.session_id AND a.seq = v.seq), 0)
		+ row_number() OVER (PARTITION BY v.session_id, v.seq ORDER BY v.ord),
	v.field, v.text
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) WITH ORDINALITY AS v(session_id, seq, field, text, ord)`
	// qAppendTextsRaw is qAppendTexts for a run of appends some of which
	// hold NUL: each row has text, or raw with text NULL (migration 0011).
	// Runs without NUL, nearly all, keep the statement above.
	qAppendTextsRaw = `INSERT INTO artifact_appends (session_id, seq, n, field, text, raw)
SELECT v.session_id, v.seq,
	COALESCE((SELECT MAX(a.n) FROM artifact_appends a WHERE a.session_id = v.session_id AND a.seq = v.seq), 0)
		+ row_number() OVER (PARTITION BY v.session_id, v.seq ORDER BY v.ord),
	v.field, v.text, v.raw
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bytea[]) WITH ORDINALITY AS v(session_id, seq, field, text, raw, ord)`
)

// plan is a commit's statements, queued on one batch, and what each does
// (for errors).
type plan struct {
	b    pgx.Batch
	what []string
	// notFound[i]: statement i failing with no_data_found means a
	// session is missing; the error's DETAIL lists which (rein_expect_all).
	notFound map[int]bool
	// created[i]: statement i creates this session; a unique violation
	// means another replica created it first.
	created map[int]string
}

func (p *plan) add(what, sql string, args ...any) {
	p.b.Queue(sql, args...)
	p.what = append(p.what, what)
}

// Commit applies ops in one transaction: all or nothing. The statements go
// to the server as one pipelined batch (see below), so a group commit
// costs one round trip whatever its size.
func (s *Store) Commit(ctx context.Context, ops []store.Op) error {
	var p plan
	// Every Expect of the commit becomes one rein_expect call, first: it
	// locks the rows in id order before anything else is written.
	var expIDs []string
	var expVersions, expCreated []int64
	for _, op := range ops {
		if e, ok := op.(store.Expect); ok {
			expIDs = append(expIDs, e.SessionID)
			expVersions = append(expVersions, e.Version)
			expCreated = append(expCreated, e.CreatedAt)
		}
	}
	if len(expIDs) > 0 {
		p.add(fmt.Sprintf("expect %d sessions", len(expIDs)), qExpect, expIDs, expVersions, expCreated)
	}
	// Runs of the ops a group commit is made of are written as one
	// statement per kind (segment); any other op ends the run and is
	// written alone, in its place.
	var seg segment
	for _, op := range ops {
		if seg.add(op) {
			continue
		}
		seg.flush(&p)
		if seg.add(op) { // a session's second update starts the next run
			continue
		}
		if err := queue(&p, op); err != nil {
			return fmt.Errorf("commit %d ops: %w", len(ops), err)
		}
	}
	seg.flush(&p)
	if len(p.what) == 0 {
		return nil
	}
	// No BEGIN or COMMIT: the statements of one batch reach the server in
	// one pipeline ending in one Sync, which it runs as one implicit
	// transaction. The first failing statement makes it skip the rest and
	// roll everything back; otherwise it commits at the Sync. The commit
	// is then one round trip whatever its size.
	br := s.pool.SendBatch(ctx, &p.b)
	for i, what := range p.what {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			var pgErr *pgconn.PgError
			if p.notFound[i] && errors.As(err, &pgErr) && pgErr.Code == "P0002" {
				var missing []string
				if json.Unmarshal([]byte(pgErr.Detail), &missing) == nil && len(missing) > 0 {
					err = notFound(missing[0])
				}
			}
			if id, ok := p.created[i]; ok && errors.As(err, &pgErr) && pgErr.Code == "23505" {
				// The writer reads the session and answers 409 rather
				// than failing the whole group.
				err = &store.StaleError{IDs: []string{id}}
			}
			if errors.As(err, &pgErr) && pgErr.Code == "RN001" {
				st := &store.StaleError{}
				if jerr := json.Unmarshal([]byte(pgErr.Detail), &st.IDs); jerr != nil {
					st.IDs = expIDs
				}
				err = st
			}
			return fmt.Errorf("commit %d ops: %s: %w", len(ops), what, err)
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("commit %d ops: %w", len(ops), err)
	}
	// Announced after the commit, never inside it (see announcer).
	s.announce(touched(ops))
	return nil
}

// touched returns the ids of the sessions ops write, each once.
func touched(ops []store.Op) []string {
	var ids []string
	seen := map[string]bool{}
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, op := range ops {
		switch op := op.(type) {
		case store.CreateSession:
			add(op.Session.ID)
		case store.DeleteSession:
			add(op.ID)
		case store.UpdateSession:
			add(op.Session.ID)
		case store.AppendEvents:
			add(op.SessionID)
		case store.PutArtifacts:
			add(op.SessionID)
		case store.PutArtifactHeads:
			add(op.SessionID)
		case store.AppendArtifacts:
			add(op.SessionID)
		case store.AddCommand:
			add(op.SessionID)
		case store.AddInstance:
			add(op.SessionID)
		case store.SetSandboxToken:
			add(op.SessionID)
		case store.PutTurnDigest:
			add(op.SessionID)
		case store.PutChanges:
			add(op.SessionID)
		}
	}
	return ids
}

func queue(p *plan, op store.Op) error {
	switch op := op.(type) {
	case store.CreateSession:
		r := op.Session
		if p.created == nil {
			p.created = map[int]string{}
		}
		p.created[len(p.what)] = r.ID
		p.add("create session "+r.ID, qCreateSession,
			r.ID, string(r.Status), r.Summary, r.Project, r.CreatedAt, r.LastHeartbeat)
	case store.DeleteSession:
		p.add("delete session "+op.ID, qDeleteSession, op.ID)
	case store.PutArtifacts:
		for _, a := range op.Artifacts {
			// The full body replaces the artifact and whatever was
			// appended to it.
			what := fmt.Sprintf("put artifact session=%s seq=%d", op.SessionID, a.Seq)
			p.add(what, qPutArtifact, op.SessionID, a.Seq, a.Rev, string(a.Body))
			p.add(what+": drop appends", qDropAppends, op.SessionID, a.Seq)
		}
	case store.PutArtifactHeads:
		for _, a := range op.Artifacts {
			p.add(fmt.Sprintf("put artifact head session=%s seq=%d", op.SessionID, a.Seq), qPutArtifactHead,
				op.SessionID, a.Seq, a.Rev, string(a.Body))
		}
	case store.AddCommand:
		c := op.Command
		p.add(fmt.Sprintf("add command session=%s id=%d", op.SessionID, c.ID), qAddCommand,
			op.SessionID, c.ID, string(c.Body), c.CreatedAt, c.Key)
	case store.AddInstance:
		p.add("add instance session="+op.SessionID, qAddInstance, op.SessionID, op.Instance, op.At)
	case store.SetSandboxToken:
		p.add("set sandbox token session="+op.SessionID, qSetSandboxToken, op.SessionID, op.Hash[:], op.At)
	case store.PutTurnDigest:
		d := op.Digest
		p.add(fmt.Sprintf("put turn digest session=%s end=%d", op.SessionID, d.EndPos), qPutTurnDigest,
			op.SessionID, d.EndPos, d.TurnID, d.Digest[:], d.At)
	case store.Expect, store.Unstage, store.AppendEvents, store.UpdateSession, store.AppendArtifacts, store.PutChanges:
		// segment.add takes every one of these.
		return fmt.Errorf("store op %T outside a segment", op)
	default:
		return fmt.Errorf("unknown store op %T", op)
	}
	return nil
}

// segment gathers a run of a commit's ops of the kinds a group commit is
// made of (events, change batches, appends to artifacts and session rows,
// of any number of sessions) and writes them with one statement per kind.
// A group of 15 single-event requests was 76 statements written one by
// one, each a round of PostgreSQL's executor: the commit took 4.6 ms on
// average and single-event ingest reached 4,100 events/s with the machine
// a third idle.
//
// Rows of different sessions are independent, and the kinds touch
// different tables, so writing them by kind in the run's place changes
// nothing, with two exceptions handled here: two appends to the same
// artifact keep their order (qAppendTexts numbers them in it) and update
// its row once, with the later revision and both lengths; and a session
// row updated twice ends the run, since one UPDATE cannot write a row
// twice.
type segment struct {
	n int // ops taken

	evSessions, evInstances []string
	evPos, evSeqs           []int64
	evBodies                [][]byte

	chSessions         []string
	chFrom, chTo, chAt []int64
	chBodies           [][]byte

	revs  []artifactRev
	revAt map[artifactKey]int

	txSessions, txFields, txTexts []string
	txSeqs                        []int64
	// txNUL: some of txTexts hold NUL, which PostgreSQL's text cannot
	// store (see appendTexts).
	txNUL bool

	updates []store.Session
	updated map[string]bool
}

type artifactKey struct {
	session string
	seq     int64
}

type artifactRev struct {
	artifactKey
	rev, bytes int64
}

// add takes op into the segment, or reports that it cannot: op is of
// another kind, or updates a session the segment already updates.
func (s *segment) add(op store.Op) bool {
	switch op := op.(type) {
	case store.Expect, store.Unstage:
		// Queued first, all together (see Commit); nothing to stage.
		return true
	case store.AppendEvents:
		for _, e := range op.Events {
			s.evSessions = append(s.evSessions, op.SessionID)
			s.evPos = append(s.evPos, e.Pos)
			s.evInstances = append(s.evInstances, e.Instance)
			s.evSeqs = append(s.evSeqs, e.AgentSeq)
			s.evBodies = append(s.evBodies, e.Body)
		}
	case store.PutChanges:
		b := op.Batch
		s.chSessions = append(s.chSessions, op.SessionID)
		s.chFrom = append(s.chFrom, b.FromRev)
		s.chTo = append(s.chTo, b.ToRev)
		s.chAt = append(s.chAt, b.At)
		s.chBodies = append(s.chBodies, b.Body)
	case store.AppendArtifacts:
		if s.revAt == nil {
			s.revAt = map[artifactKey]int{}
		}
		for _, a := range op.Appends {
			k := artifactKey{op.SessionID, a.Seq}
			i, ok := s.revAt[k]
			if !ok {
				i = len(s.revs)
				s.revAt[k] = i
				s.revs = append(s.revs, artifactRev{artifactKey: k})
			}
			s.revs[i].rev = a.Rev
			for _, f := range a.Fields {
				s.revs[i].bytes += int64(len(f.Text))
				s.txSessions = append(s.txSessions, op.SessionID)
				s.txSeqs = append(s.txSeqs, a.Seq)
				s.txFields = append(s.txFields, f.Field)
				s.txTexts = append(s.txTexts, f.Text)
				s.txNUL = s.txNUL || strings.IndexByte(f.Text, 0) >= 0
			}
		}
	case store.UpdateSession:
		if s.updated[op.Session.ID] {
			return false
		}
		if s.updated == nil {
			s.updated = map[string]bool{}
		}
		s.updated[op.Session.ID] = true
		s.updates = append(s.updates, op.Session)
	default:
		return false
	}
	s.n++
	return true
}

// appendTexts queues the segment's appended texts. When some hold NUL,
// those go in raw, their text NULL, so that the server appends a binary
// tool output instead of writing its whole body at every commit (see
// AppendsNUL); a NULL array element stands for the column a row does not
// use.
func (s *segment) appendTexts(p *plan) {
	what := fmt.Sprintf("append %d texts to artifacts from session=%s seq=%d", len(s.txTexts), s.txSessions[0], s.txSeqs[0])
	if !s.txNUL {
		p.add(what, qAppendTexts, s.txSessions, s.txSeqs, s.txFields, s.txTexts)
		return
	}
	texts, raw := make([]pgtype.Text, len(s.txTexts)), make([][]byte, len(s.txTexts))
	for i, t := range s.txTexts {
		if strings.IndexByte(t, 0) < 0 {
			texts[i] = pgtype.Text{String: t, Valid: true}
		} else {
			raw[i] = []byte(t)
		}
	}
	p.add(what, qAppendTextsRaw, s.txSessions, s.txSeqs, s.txFields, texts, raw)
}

// flush queues the segment's statements on p and empties it. The events
// go first, as they did one op at a time; an artifact's row is checked
// (qAppendRevs) before its appends are inserted.
func (s *segment) flush(p *plan) {
	if s.n == 0 {
		return
	}
	if n := len(s.evSessions); n > 0 {
		p.add(fmt.Sprintf("append %d events from session=%s", n, s.evSessions[0]), qInsertEvents,
			s.evSessions, s.evPos, s.evInstances, s.evSeqs, s.evBodies)
	}
	if n := len(s.chSessions); n > 0 {
		p.add(fmt.Sprintf("put %d change batches from session=%s revs=%d-%d", n, s.chSessions[0], s.chFrom[0], s.chTo[0]), qPutChanges,
			s.chSessions, s.chFrom, s.chTo, s.chAt, s.chBodies)
	}
	if n := len(s.revs); n > 0 {
		sessions, seqs, revs, bytes := make([]string, n), make([]int64, n), make([]int64, n), make([]int64, n)
		for i, r := range s.revs {
			sessions[i], seqs[i], revs[i], bytes[i] = r.session, r.seq, r.rev, r.bytes
		}
		p.add(fmt.Sprintf("append to %d artifacts from session=%s seq=%d", n, sessions[0], seqs[0]), qAppendRevs,
			sessions, seqs, revs, bytes)
	}
	if len(s.txSessions) > 0 {
		s.appendTexts(p)
	}
	if n := len(s.updates); n > 0 {
		var (
			ids, statuses, instances                = make([]string, n), make([]string, n), make([]string, n)
			summaries                               = make([]*string, n)
			heartbeats                              = make([]*int64, n)
			revs, lastCmds, acked, versions, epochs = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		)
		for i, r := range s.updates {
			ids[i], statuses[i], summaries[i], heartbeats[i] = r.ID, string(r.Status), r.Summary, r.LastHeartbeat
			revs[i], lastCmds[i], instances[i], acked[i] = r.Rev, r.LastCommandID, r.CurrentInstance, r.AckedCommandID
			versions[i], epochs[i] = r.Version, r.StreamEpoch
		}
		if p.notFound == nil {
			p.notFound = map[int]bool{}
		}
		p.notFound[len(p.what)] = true
		what := "update session " + ids[0]
		if n > 1 {
			what = fmt.Sprintf("update %d sessions from %s", n, ids[0])
		}
		p.add(what, qUpdateSessions, ids, statuses, summaries, heartbeats, revs, lastCmds, instances, acked, versions, epochs)
	}
	*s = segment{}
}
