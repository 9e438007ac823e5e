package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rein-ai/rein/server/store"
)

// The statements Commit runs. pgx prepares each once per connection and
// caches it (its default exec mode).
const (
	qCreateSession   = `INSERT INTO sessions (id, status, summary, project, created_at, last_heartbeat) VALUES ($1, $2, $3, $4, $5, $6)`
	qDeleteSession   = `DELETE FROM sessions WHERE id = $1`
	qUpdateSession   = `UPDATE sessions SET status = $1, summary = $2, last_heartbeat = $3, rev = $4, last_command_id = $5, current_instance = $6 WHERE id = $7`
	qInsertEvents    = `INSERT INTO events (session_id, pos, instance, agent_seq, body) SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bytea[])`
	qPutArtifact     = `INSERT INTO artifacts (session_id, seq, rev, body) VALUES ($1, $2, $3, $4) ON CONFLICT (session_id, seq) DO UPDATE SET rev = excluded.rev, body = excluded.body, appended = 0`
	qDropAppends     = `DELETE FROM artifact_appends WHERE session_id = $1 AND seq = $2`
	qAppendRev       = `UPDATE artifacts SET rev = $1, appended = appended + $2 WHERE session_id = $3 AND seq = $4`
	qAppendText      = `INSERT INTO artifact_appends (session_id, seq, n, field, text) VALUES ($1, $2, (SELECT COALESCE(MAX(n), 0) + 1 FROM artifact_appends WHERE session_id = $1 AND seq = $2), $3, $4)`
	qAddCommand      = `INSERT INTO commands (session_id, id, body, created_at) VALUES ($1, $2, $3, $4)`
	qAddInstance     = `INSERT INTO sandbox_instances (session_id, instance, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
	qSetSandboxToken = `INSERT INTO sandbox_tokens (session_id, hash, created_at) VALUES ($1, $2, $3) ON CONFLICT (session_id) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at`
)

// step is one statement of a commit: what it does (for errors) and what
// its result must be.
type step struct {
	what  string
	check func(pgconn.CommandTag) error
}

// plan is a commit's statements, queued on one batch.
type plan struct {
	b     pgx.Batch
	steps []step
}

func (p *plan) add(what string, check func(pgconn.CommandTag) error, sql string, args ...any) {
	p.b.Queue(sql, args...)
	p.steps = append(p.steps, step{what, check})
}

// Commit applies ops in one transaction: all or nothing. The statements go
// to the server as one pipelined batch, so a group commit costs one round
// trip for its statements besides BEGIN and COMMIT, whatever its size.
func (s *Store) Commit(ctx context.Context, ops []store.Op) error {
	var p plan
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
	if len(p.steps) == 0 {
		return nil
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("commit %d ops: begin: %w", len(ops), err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	br := tx.SendBatch(ctx, &p.b)
	for _, st := range p.steps {
		tag, err := br.Exec()
		if err == nil && st.check != nil {
			err = st.check(tag)
		}
		if err != nil {
			_ = br.Close()
			return fmt.Errorf("commit %d ops: %s: %w", len(ops), st.what, err)
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("commit %d ops: %w", len(ops), err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit %d ops: %w", len(ops), err)
	}
	return nil
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
	p.add(what, nil, qInsertEvents, sessions, pos, instances, seqs, bodies)
}

// rows returns a check that the statement touched exactly n rows.
func rows(n int64, err func(got int64) error) func(pgconn.CommandTag) error {
	return func(tag pgconn.CommandTag) error {
		if got := tag.RowsAffected(); got != n {
			return err(got)
		}
		return nil
	}
}

func queue(p *plan, op store.Op) error {
	switch op := op.(type) {
	case store.CreateSession:
		r := op.Session
		p.add("create session "+r.ID, nil, qCreateSession,
			r.ID, string(r.Status), r.Summary, r.Project, r.CreatedAt, r.LastHeartbeat)
	case store.DeleteSession:
		p.add("delete session "+op.ID, nil, qDeleteSession, op.ID)
	case store.UpdateSession:
		r := op.Session
		p.add("update session "+r.ID, rows(1, func(int64) error { return notFound(r.ID) }), qUpdateSession,
			string(r.Status), r.Summary, r.LastHeartbeat, r.Rev, r.LastCommandID, r.CurrentInstance, r.ID)
	case store.AppendEvents:
		queueEvents(p, []store.Op{op})
	case store.PutArtifacts:
		for _, a := range op.Artifacts {
			// The full body replaces the artifact and whatever was
			// appended to it.
			what := fmt.Sprintf("put artifact session=%s seq=%d", op.SessionID, a.Seq)
			p.add(what, nil, qPutArtifact, op.SessionID, a.Seq, a.Rev, string(a.Body))
			p.add(what+": drop appends", nil, qDropAppends, op.SessionID, a.Seq)
		}
	case store.AppendArtifacts:
		for _, a := range op.Appends {
			var bytes int64
			for _, f := range a.Fields {
				bytes += int64(len(f.Text))
			}
			what := fmt.Sprintf("append to artifact session=%s seq=%d", op.SessionID, a.Seq)
			p.add(what, rows(1, func(n int64) error { return fmt.Errorf("artifact not stored (%d rows)", n) }),
				qAppendRev, a.Rev, bytes, op.SessionID, a.Seq)
			for _, f := range a.Fields {
				p.add(what+" field="+f.Field, nil, qAppendText, op.SessionID, a.Seq, f.Field, f.Text)
			}
		}
	case store.AddCommand:
		c := op.Command
		p.add(fmt.Sprintf("add command session=%s id=%d", op.SessionID, c.ID), nil, qAddCommand,
			op.SessionID, c.ID, string(c.Body), c.CreatedAt)
	case store.AddInstance:
		p.add("add instance session="+op.SessionID, nil, qAddInstance, op.SessionID, op.Instance, op.At)
	case store.SetSandboxToken:
		p.add("set sandbox token session="+op.SessionID, nil, qSetSandboxToken, op.SessionID, op.Hash[:], op.At)
	default:
		return fmt.Errorf("unknown store op %T", op)
	}
	return nil
}
