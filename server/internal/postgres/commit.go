package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rein-ai/rein/server/store"
)

// The statements Commit runs. pgx prepares each once per connection and
// caches it (its default exec mode).
const (
	qExpect          = `SELECT rein_expect($1::text[], $2::bigint[])`
	qPutChanges      = `INSERT INTO change_batches (session_id, from_rev, to_rev, at, body) VALUES ($1, $2, $3, $4, $5)`
	qCreateSession   = `INSERT INTO sessions (id, status, summary, project, created_at, last_heartbeat) VALUES ($1, $2, $3, $4, $5, $6)`
	qDeleteSession   = `DELETE FROM sessions WHERE id = $1`
	qUpdateSession   = `WITH u AS (UPDATE sessions SET status = $1, summary = $2, last_heartbeat = $3, rev = $4, last_command_id = $5, current_instance = $6, acked_command_id = $7, version = $9, stream_epoch = $10 WHERE id = $8 RETURNING 1) SELECT rein_expect_one(count(*), 'update session') FROM u`
	qInsertEvents    = `INSERT INTO events (session_id, pos, instance, agent_seq, body) SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bytea[])`
	qPutArtifact     = `INSERT INTO artifacts (session_id, seq, rev, body) VALUES ($1, $2, $3, $4) ON CONFLICT (session_id, seq) DO UPDATE SET rev = excluded.rev, body = excluded.body, appended = 0`
	qDropAppends     = `DELETE FROM artifact_appends WHERE session_id = $1 AND seq = $2`
	qAppendRev       = `WITH u AS (UPDATE artifacts SET rev = $1, appended = appended + $2 WHERE session_id = $3 AND seq = $4 RETURNING 1) SELECT rein_expect_one(count(*), 'artifact not stored') FROM u`
	qAppendText      = `INSERT INTO artifact_appends (session_id, seq, n, field, text) VALUES ($1, $2, (SELECT COALESCE(MAX(n), 0) + 1 FROM artifact_appends WHERE session_id = $1 AND seq = $2), $3, $4)`
	qAddCommand      = `INSERT INTO commands (session_id, id, body, created_at) VALUES ($1, $2, $3, $4)`
	qAddInstance     = `INSERT INTO sandbox_instances (session_id, instance, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
	qSetSandboxToken = `INSERT INTO sandbox_tokens (session_id, hash, created_at) VALUES ($1, $2, $3) ON CONFLICT (session_id) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at`
)

// plan is a commit's statements, queued on one batch, and what each does
// (for errors).
type plan struct {
	b    pgx.Batch
	what []string
	// notFound[i]: statement i failing with no_data_found means the
	// session is missing.
	notFound map[int]string
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
	var expVersions []int64
	for _, op := range ops {
		if e, ok := op.(store.Expect); ok {
			expIDs = append(expIDs, e.SessionID)
			expVersions = append(expVersions, e.Version)
		}
	}
	if len(expIDs) > 0 {
		p.add(fmt.Sprintf("expect %d sessions", len(expIDs)), qExpect, expIDs, expVersions)
	}
	for i := 0; i < len(ops); {
		// A run of AppendEvents (one per request of a group) becomes one
		// insert of arrays: their rows are independent of each other.
		j := i
		for j < len(ops) {
			if _, ok := ops[j].(store.AppendEvents); !ok {
				break
			}
			j++
		}
		if j > i {
			queueEvents(&p, ops[i:j])
			i = j
			continue
		}
		if err := queue(&p, ops[i]); err != nil {
			return fmt.Errorf("commit %d ops: %w", len(ops), err)
		}
		i++
	}
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
			if id, ok := p.notFound[i]; ok && errors.As(err, &pgErr) && pgErr.Code == "P0002" {
				err = notFound(id)
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

// queueEvents queues the events of ops, all AppendEvents, as one insert.
func queueEvents(p *plan, ops []store.Op) {
	var n int
	for _, op := range ops {
		n += len(op.(store.AppendEvents).Events)
	}
	var (
		sessions  = make([]string, 0, n)
		pos       = make([]int64, 0, n)
		instances = make([]string, 0, n)
		seqs      = make([]int64, 0, n)
		bodies    = make([][]byte, 0, n)
	)
	for _, op := range ops {
		ae := op.(store.AppendEvents)
		for _, e := range ae.Events {
			sessions = append(sessions, ae.SessionID)
			pos = append(pos, e.Pos)
			instances = append(instances, e.Instance)
			seqs = append(seqs, e.AgentSeq)
			bodies = append(bodies, e.Body)
		}
	}
	if n == 0 {
		return
	}
	first := ops[0].(store.AppendEvents)
	what := fmt.Sprintf("append %d events from session=%s", n, first.SessionID)
	p.add(what, qInsertEvents, sessions, pos, instances, seqs, bodies)
}

func queue(p *plan, op store.Op) error {
	switch op := op.(type) {
	case store.Expect:
		// Queued first, all together (see Commit).
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
	case store.UpdateSession:
		r := op.Session
		if p.notFound == nil {
			p.notFound = map[int]string{}
		}
		p.notFound[len(p.what)] = r.ID
		p.add("update session "+r.ID, qUpdateSession,
			string(r.Status), r.Summary, r.LastHeartbeat, r.Rev, r.LastCommandID, r.CurrentInstance, r.AckedCommandID, r.ID, r.Version, r.StreamEpoch)
	case store.AppendEvents:
		queueEvents(p, []store.Op{op})
	case store.PutArtifacts:
		for _, a := range op.Artifacts {
			// The full body replaces the artifact and whatever was
			// appended to it.
			what := fmt.Sprintf("put artifact session=%s seq=%d", op.SessionID, a.Seq)
			p.add(what, qPutArtifact, op.SessionID, a.Seq, a.Rev, string(a.Body))
			p.add(what+": drop appends", qDropAppends, op.SessionID, a.Seq)
		}
	case store.AppendArtifacts:
		for _, a := range op.Appends {
			var bytes int64
			for _, f := range a.Fields {
				bytes += int64(len(f.Text))
			}
			what := fmt.Sprintf("append to artifact session=%s seq=%d", op.SessionID, a.Seq)
			p.add(what, qAppendRev, a.Rev, bytes, op.SessionID, a.Seq)
			for _, f := range a.Fields {
				p.add(what+" field="+f.Field, qAppendText, op.SessionID, a.Seq, f.Field, f.Text)
			}
		}
	case store.AddCommand:
		c := op.Command
		p.add(fmt.Sprintf("add command session=%s id=%d", op.SessionID, c.ID), qAddCommand,
			op.SessionID, c.ID, string(c.Body), c.CreatedAt)
	case store.AddInstance:
		p.add("add instance session="+op.SessionID, qAddInstance, op.SessionID, op.Instance, op.At)
	case store.SetSandboxToken:
		p.add("set sandbox token session="+op.SessionID, qSetSandboxToken, op.SessionID, op.Hash[:], op.At)
	case store.PutChanges:
		b := op.Batch
		p.add(fmt.Sprintf("put changes session=%s revs=%d-%d", op.SessionID, b.FromRev, b.ToRev), qPutChanges,
			op.SessionID, b.FromRev, b.ToRev, b.At, b.Body)
	case store.PutTurnDigest:
		d := op.Digest
		p.add(fmt.Sprintf("put turn digest session=%s end=%d", op.SessionID, d.EndPos), qPutTurnDigest,
			op.SessionID, d.EndPos, d.TurnID, d.Digest[:], d.At)
	case store.Unstage:
		// Nothing is staged here (not a store.Stager).
	default:
		return fmt.Errorf("unknown store op %T", op)
	}
	return nil
}
