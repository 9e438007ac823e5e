package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// IsDSN reports whether db names a PostgreSQL database (a postgres:// or
// postgresql:// URL) rather than a SQLite file.
func IsDSN(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// LockTimeout bounds how long a statement waits for a row lock, so one
// stuck session cannot stall a replica's writer: the commit fails and its
// requests get 503 (retryable) instead.
const LockTimeout = 5 * time.Second

// migrateLock is the advisory lock key that serialises migrations when
// several replicas start at once against one database.
const migrateLock = 0x7265696e // "rein"

// Store is the PostgreSQL Store.
type Store struct {
	pool *pgxpool.Pool
	// name is the database as logs show it: host/dbname, no password.
	name string
	log  *slog.Logger
	ann  *announcer
	// origin tells this store's change announcements from other
	// replicas' (see Watch).
	origin string
}

// Open connects to the database dsn names (a postgres:// URL or a
// key=value string, as pgx accepts) and migrates it. log (nil: discard)
// gets what goes wrong outside a call: a lost connection of Watch, an
// announcement that could not be sent.
func Open(ctx context.Context, dsn string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included: do not wrap it.
		return nil, errors.New("open postgres: --db is not a valid PostgreSQL URL")
	}
	// Durable acknowledgements whatever the server's default says, and a
	// bound on lock waits (see LockTimeout).
	rp := cfg.ConnConfig.RuntimeParams
	rp["synchronous_commit"] = "on"
	rp["lock_timeout"] = strconv.FormatInt(LockTimeout.Milliseconds(), 10)
	rp["application_name"] = "rein-server"
	// A replica that vanishes mid-commit (its host gone, the network cut:
	// no FIN, no RST) leaves its backend holding the rows the commit
	// locked, waiting for the rest of the pipeline; idle_in_transaction
	// does not count then (no Sync came), and the system's keepalive
	// notices after about two hours, while every other replica's commit
	// touching those sessions fails at lock_timeout. Keepalives on the
	// backend's side end such a connection, and its locks, in about 25 s.
	rp["tcp_keepalives_idle"] = "10"
	rp["tcp_keepalives_interval"] = "5"
	rp["tcp_keepalives_count"] = "3"
	if cfg.MaxConns < 8 {
		cfg.MaxConns = 8
	}
	name := cfg.ConnConfig.Host + "/" + cfg.ConnConfig.Database
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres %s: %w", name, err)
	}
	s := &Store{pool: pool, name: name, log: log, origin: newOrigin()}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	s.startAnnouncer()
	return s, nil
}

// Name returns the database as host/dbname (never the password).
func (s *Store) Name() string { return s.name }

// Close closes the pool.
func (s *Store) Close() error {
	s.stopAnnouncer()
	s.pool.Close()
	return nil
}

// migrate applies the embedded migrations not yet recorded in
// schema_version, all in one transaction under an advisory lock: replicas
// starting together wait for the first one instead of racing it, and DDL
// in PostgreSQL is transactional, so a failed migration leaves nothing.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: begin: %w", s.name, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLock); err != nil {
		return fmt.Errorf("migrate %s: lock: %w", s.name, err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate %s: create schema_version: %w", s.name, err)
	}
	rows, _ := tx.Query(ctx, `SELECT version FROM schema_version`)
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return fmt.Errorf("migrate %s: read schema_version: %w", s.name, err)
	}
	pending, err := store.PendingMigrations(migrations, "migrations", applied)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", s.name, err)
	}
	for _, m := range pending {
		// Exec without arguments uses the simple protocol, which runs a
		// script of several statements.
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES ($1)`, m.Version); err != nil {
			return fmt.Errorf("migrate %s: record version: %w", m.Name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate %s: commit: %w", s.name, err)
	}
	return nil
}

// SchemaVersion returns the newest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := s.pool.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return v, nil
}

// AppendsNUL reports that appended text may hold NUL: such an append is
// stored as bytes, the others as text (migration 0011; store.NULAppender).
func (s *Store) AppendsNUL() bool { return true }

// Ping checks that the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.pool.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("ping postgres %s: %w", s.name, err)
	}
	return nil
}

func notFound(id string) error {
	return protocol.Errorf(protocol.CodeNotFound, "session %q not found", id)
}

const sessionCols = `id, status, summary, project, created_at, last_heartbeat, rev, last_command_id, current_instance, acked_command_id, version, stream_epoch`

// scanSession reads one row of sessionCols.
func scanSession(row pgx.CollectableRow) (store.Session, error) {
	var (
		s      store.Session
		status string
	)
	err := row.Scan(&s.ID, &status, &s.Summary, &s.Project, &s.CreatedAt, &s.LastHeartbeat, &s.Rev, &s.LastCommandID, &s.CurrentInstance, &s.AckedCommandID, &s.Version, &s.StreamEpoch)
	s.Status = protocol.SessionStatus(status)
	s.PendingCommands = max(s.LastCommandID-s.AckedCommandID, 0)
	return s, err
}

// readTx runs f in a REPEATABLE READ READ ONLY transaction: every query of
// f sees the same snapshot, so a revision read with artifacts covers
// exactly them.
func (s *Store) readTx(ctx context.Context, f func(pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Session returns one session record.
func (s *Store) Session(ctx context.Context, id string) (protocol.Session, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = $1`, id)
	r, err := pgx.CollectExactlyOneRow(rows, scanSession)
	if errors.Is(err, pgx.ErrNoRows) {
		return protocol.Session{}, notFound(id)
	}
	if err != nil {
		return protocol.Session{}, fmt.Errorf("get session %s: %w", id, err)
	}
	return r.Session, nil
}

// Sessions lists sessions oldest first; project "" means all.
func (s *Store) Sessions(ctx context.Context, project string) ([]protocol.Session, error) {
	q := `SELECT ` + sessionCols + ` FROM sessions`
	var args []any
	if project != "" {
		q += ` WHERE project = $1`
		args = append(args, project)
	}
	q += ` ORDER BY created_at, ord`
	rows, _ := s.pool.Query(ctx, q, args...)
	recs, err := pgx.CollectRows(rows, scanSession)
	if err != nil {
		return nil, fmt.Errorf("list sessions project=%q: %w", project, err)
	}
	out := make([]protocol.Session, len(recs))
	for i, r := range recs {
		out[i] = r.Session
	}
	return out, nil
}

// LoadSessions returns every session with its internal state, oldest first.
func (s *Store) LoadSessions(ctx context.Context) ([]store.Session, error) {
	var out []store.Session
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT `+sessionCols+` FROM sessions ORDER BY created_at, ord`)
		var err error
		if out, err = pgx.CollectRows(rows, scanSession); err != nil {
			return err
		}
		byID := make(map[string]*store.Session, len(out))
		for i := range out {
			byID[out[i].ID] = &out[i]
		}
		rows, _ = tx.Query(ctx, `SELECT session_id, instance FROM sandbox_instances ORDER BY session_id, first_seen, instance`)
		var sid, inst string
		_, err = pgx.ForEachRow(rows, []any{&sid, &inst}, func() error {
			if r := byID[sid]; r != nil {
				r.Instances = append(r.Instances, inst)
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load sessions: %w", err)
	}
	return out, nil
}

// Events returns a session's event log in order.
func (s *Store) Events(ctx context.Context, id string) ([]store.Event, error) {
	rows, _ := s.pool.Query(ctx, `SELECT pos, instance, agent_seq, body FROM events WHERE session_id = $1 ORDER BY pos`, id)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Event, error) {
		var e store.Event
		err := row.Scan(&e.Pos, &e.Instance, &e.AgentSeq, &e.Body)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("read events session=%s: %w", id, err)
	}
	return out, nil
}

// artifactRow is an artifact as stored; appended > 0 means it has pending
// appends to merge into body.
type artifactRow struct {
	store.Artifact
	appended int64
}

func scanArtifact(row pgx.CollectableRow) (artifactRow, error) {
	var (
		a    artifactRow
		body string
	)
	err := row.Scan(&a.Seq, &a.Rev, &body, &a.appended)
	a.Body = []byte(body)
	return a, err
}

// withAppends returns the rows as artifacts, merging pending appends into
// the bodies of the rows that have them, read in tx (the rows' snapshot).
func withAppends(ctx context.Context, tx pgx.Tx, id string, rows []artifactRow) ([]store.Artifact, error) {
	out := make([]store.Artifact, len(rows))
	var pending []int64
	at := map[int64]int{}
	for i, r := range rows {
		out[i] = r.Artifact
		if r.appended > 0 {
			pending = append(pending, r.Seq)
			at[r.Seq] = i
		}
	}
	if len(pending) == 0 {
		return out, nil
	}
	// One query for every artifact with appends, not one per artifact.
	// An append whose text holds NUL is in raw, its text NULL (migration
	// 0011).
	q, _ := tx.Query(ctx, `SELECT seq, field, text, raw FROM artifact_appends WHERE session_id = $1 AND seq = ANY($2) ORDER BY seq, n`, id, pending)
	appends := map[int64][]store.FieldAppend{}
	var (
		seq   int64
		field string
		text  pgtype.Text
		raw   []byte
	)
	if _, err := pgx.ForEachRow(q, []any{&seq, &field, &text, &raw}, func() error {
		fa := store.FieldAppend{Field: field, Text: text.String}
		if !text.Valid {
			fa.Text = string(raw)
		}
		appends[seq] = append(appends[seq], fa)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read appends session=%s: %w", id, err)
	}
	for _, seq := range pending {
		i := at[seq]
		body, err := store.MergeAppends(out[i].Body, out[i].Rev, appends[seq])
		if err != nil {
			return nil, fmt.Errorf("artifact session=%s seq=%d: %w", id, seq, err)
		}
		out[i].Body = body
	}
	return out, nil
}

func exists(ctx context.Context, tx pgx.Tx, id string) (int64, error) {
	var rev int64
	err := tx.QueryRow(ctx, `SELECT rev FROM sessions WHERE id = $1`, id).Scan(&rev)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, notFound(id)
	}
	if err != nil {
		return 0, fmt.Errorf("find session %s: %w", id, err)
	}
	return rev, nil
}

// Artifacts returns a session's artifacts ordered by seq.
func (s *Store) Artifacts(ctx context.Context, id string) ([]store.Artifact, error) {
	var out []store.Artifact
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		if _, err := exists(ctx, tx, id); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT seq, rev, body, appended FROM artifacts WHERE session_id = $1 ORDER BY seq`, id)
		arts, err := pgx.CollectRows(rows, scanArtifact)
		if err != nil {
			return err
		}
		out, err = withAppends(ctx, tx, id, arts)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list artifacts session=%s: %w", id, err)
	}
	return out, nil
}

// ArtifactsSince returns the artifacts whose rev is greater than after, in
// rev order, with the session's rev, from one snapshot.
func (s *Store) ArtifactsSince(ctx context.Context, id string, after int64) (store.Snapshot, error) {
	return s.artifactsSince(ctx, id, after, 0, 0)
}

// ArtifactsPage is one page of ArtifactsSince, cut at limit artifacts
// and maxBytes of bodies (store.PageCut).
func (s *Store) ArtifactsPage(ctx context.Context, id string, after int64, limit, maxBytes int) (store.Snapshot, error) {
	if limit <= 0 {
		return store.Snapshot{}, fmt.Errorf("artifact page session=%s: limit %d: must be positive", id, limit)
	}
	return s.artifactsSince(ctx, id, after, limit, maxBytes)
}

// artifactsSince reads the artifacts with rev > after: all of them when
// limit is 0, else a page cut at limit and maxBytes.
func (s *Store) artifactsSince(ctx context.Context, id string, after int64, limit, maxBytes int) (store.Snapshot, error) {
	var snap store.Snapshot
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT rev, created_at FROM sessions WHERE id = $1`, id).Scan(&snap.Rev, &snap.Created)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound(id)
		}
		if err != nil {
			return fmt.Errorf("find session %s: %w", id, err)
		}
		// Unpaged, every artifact above after, as stored (not cut at
		// the session row's revision).
		upTo := int64(math.MaxInt64)
		if limit > 0 {
			if upTo, snap.More, err = cutPage(ctx, tx, `SELECT rev, octet_length(body) + appended FROM artifacts WHERE session_id = $1 AND rev > $2 ORDER BY rev LIMIT $3`, id, after, limit, maxBytes); err != nil {
				return err
			}
		}
		// Every artifact above after up to the page's last: the cut was
		// read in this snapshot, so these are exactly the ones it counted.
		rows, _ := tx.Query(ctx, `SELECT seq, rev, body, appended FROM artifacts WHERE session_id = $1 AND rev > $2 AND rev <= $3 ORDER BY rev`, id, after, upTo)
		arts, err := pgx.CollectRows(rows, scanArtifact)
		if err != nil {
			return err
		}
		snap.Artifacts, err = withAppends(ctx, tx, id, arts)
		return err
	})
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("artifact snapshot session=%s after=%d: %w", id, after, err)
	}
	return snap, nil
}

// cutPage runs q (key and size of the candidates, in page order, bound to
// id, after and a row limit) for limit+1 candidates and returns the key of
// the page's last artifact as store.PageCut cuts it (after when there is
// none) and whether candidates were left after it. octet_length of a
// body kept out of line (TOAST) is read from its header, so a page is cut
// before any body is read.
func cutPage(ctx context.Context, tx pgx.Tx, q, id string, after int64, limit, maxBytes int) (last int64, more bool, err error) {
	var keys, sizes []int64
	rows, _ := tx.Query(ctx, q, id, after, limit+1)
	var key, size int64
	if _, err := pgx.ForEachRow(rows, []any{&key, &size}, func() error {
		keys, sizes = append(keys, key), append(sizes, size)
		return nil
	}); err != nil {
		return 0, false, fmt.Errorf("cut page: %w", err)
	}
	n := store.PageCut(sizes, limit, maxBytes)
	if n == 0 {
		return after, false, nil
	}
	return keys[n-1], n < len(keys), nil
}

// ArtifactsBySeq returns the artifacts with seq > after, in seq order,
// cut at limit artifacts and maxBytes of bodies (store.PageCut).
func (s *Store) ArtifactsBySeq(ctx context.Context, id string, after int64, limit, maxBytes int) ([]store.Artifact, bool, error) {
	if limit <= 0 {
		return nil, false, fmt.Errorf("list artifacts session=%s: limit %d: must be positive", id, limit)
	}
	var (
		out  []store.Artifact
		more bool
	)
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		if _, err := exists(ctx, tx, id); err != nil {
			return err
		}
		upTo, m, err := cutPage(ctx, tx, `SELECT seq, octet_length(body) + appended FROM artifacts WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, id, after, limit, maxBytes)
		if err != nil {
			return err
		}
		more = m
		rows, _ := tx.Query(ctx, `SELECT seq, rev, body, appended FROM artifacts WHERE session_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq`, id, after, upTo)
		arts, err := pgx.CollectRows(rows, scanArtifact)
		if err != nil {
			return err
		}
		out, err = withAppends(ctx, tx, id, arts)
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("list artifacts session=%s after=%d: %w", id, after, err)
	}
	return out, more, nil
}

// CommandByKey returns the session's command stored with Idempotency-Key
// key (the commands_idem_key index finds it).
func (s *Store) CommandByKey(ctx context.Context, id, key string) (store.Command, bool, error) {
	var body string
	c := store.Command{Key: key}
	err := s.pool.QueryRow(ctx, `SELECT id, body, created_at FROM commands WHERE session_id = $1 AND idem_key = $2`, id, key).Scan(&c.ID, &body, &c.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Command{}, false, nil
	}
	if err != nil {
		return store.Command{}, false, fmt.Errorf("read command session=%s by key: %w", id, err)
	}
	c.Body = []byte(body)
	return c, true, nil
}

// Commands returns the commands with after < id <= upTo, in id order.
func (s *Store) Commands(ctx context.Context, id string, after, upTo int64) ([]store.Command, error) {
	rows, _ := s.pool.Query(ctx, `SELECT id, body, created_at FROM commands WHERE session_id = $1 AND id > $2 AND id <= $3 ORDER BY id`, id, after, upTo)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Command, error) {
		var (
			c    store.Command
			body string
		)
		err := row.Scan(&c.ID, &body, &c.CreatedAt)
		c.Body = []byte(body)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("read commands session=%s after=%d: %w", id, after, err)
	}
	return out, nil
}

// SandboxTokens returns every session's sandbox token hash by session id.
func (s *Store) SandboxTokens(ctx context.Context) (map[string][32]byte, error) {
	rows, _ := s.pool.Query(ctx, `SELECT session_id, hash FROM sandbox_tokens`)
	out := map[string][32]byte{}
	var (
		id   string
		hash []byte
	)
	_, err := pgx.ForEachRow(rows, []any{&id, &hash}, func() error {
		if len(hash) != 32 {
			return fmt.Errorf("session %s: hash is %d bytes, want 32", id, len(hash))
		}
		out[id] = [32]byte(hash)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load sandbox tokens: %w", err)
	}
	return out, nil
}

// CheckWrite commits a row to write_probe and deletes it, in one round
// trip: while commits fail (the database unreachable, read-only after a
// failover to a standby not yet promoted, out of disk), the server calls
// it to find out that writes work again without waiting for a client
// (store.WriteChecker).
func (s *Store) CheckWrite(ctx context.Context) error {
	var b pgx.Batch
	b.Queue(`INSERT INTO write_probe DEFAULT VALUES`)
	b.Queue(`DELETE FROM write_probe`)
	if err := s.pool.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("check write postgres %s: %w", s.name, err)
	}
	return nil
}
