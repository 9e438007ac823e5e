package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jmoiron/sqlx"
	"modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Memory is the path that selects an in-memory database.
const Memory = ":memory:"

// Store is the SQLite Store. All writes go through Commit on the single
// writer connection; reads use the reader pool in short read transactions.
type Store struct {
	w *sqlx.DB
	// r is the reader pool. In memory mode it is w: an in-memory database
	// lives in one connection, so everything shares that one connection.
	r      *sqlx.DB
	path   string
	memory bool
	// prepared holds writeQueries, prepared on the writer connection once
	// at Open. Preparing inside each commit was ~12% of the CPU of
	// single-event ingest, where groups are small.
	prepared map[string]*sql.Stmt
	// lock holds the database file for this process (nil in memory).
	lock *fileLock
	// ckpt checkpoints the WAL off the writer's path (nil in memory).
	ckpt *checkpointer
	log  *slog.Logger
	// commitMu makes Commits one at a time (the writer connection does
	// too) and guards stagedTop.
	commitMu sync.Mutex
	// stagedTop is the highest position of every session with staged
	// events (staged.go).
	stagedTop map[string]int64
}

// Sync modes: how hard a commit makes sure its writes are on disk before
// Commit returns.
const (
	// SyncFull (the default) syncs the WAL on every commit: a commit that
	// returned survives a power loss. Group commit keeps it cheap.
	SyncFull = "full"
	// SyncNormal syncs only at checkpoints: faster, and the database stays
	// consistent, but the last commits before a power loss (not a crash of
	// the process) can be lost although they were acknowledged.
	SyncNormal = "normal"
)

// Options tune Open. The zero value is the default.
type Options struct {
	// Sync is SyncFull ("" selects it) or SyncNormal.
	Sync string
	// Logger gets what goes wrong outside a call (a failed background
	// checkpoint); nil discards it.
	Logger *slog.Logger
	// walLimit overrides walSizeLimit (tests: a smaller WAL is quicker
	// to write past it).
	walLimit int
}

// pragmas are applied to every connection (synchronous follows them, see
// Options.Sync). A bare path would mean rollback journal, no busy timeout
// and foreign keys off. temp_store(MEMORY) keeps statement journals in
// memory: a multi-row insert (or one checked against a foreign key) saves
// each page it changes there in case it must be undone alone, and a group
// of 32 single-event requests changes more pages than the journal keeps in
// memory by default, so every such statement created, wrote and removed a
// temporary file (a CPU profile of single-event ingest: ~7% in those
// writes, more in open and unlink).
var pragmas = "_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=temp_store(MEMORY)&_txlock=immediate"

// Open opens (creating it if needed) the database at path and migrates it.
// path "" or ":memory:" selects an in-memory database that lives as long as
// the Store. A file is locked for this process (see lock.go): a second Open
// of the same file, by this or another process, fails naming the holder
// until Close. A file this process cannot write (or whose WAL or WAL index
// it cannot) is refused with ErrReadOnly (writable.go).
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	sync := "FULL"
	switch opts.Sync {
	case "", SyncFull:
	case SyncNormal:
		sync = "NORMAL"
	default:
		return nil, fmt.Errorf("open sqlite %s: sync %q: want %q or %q", path, opts.Sync, SyncFull, SyncNormal)
	}
	// The WAL's size limit (journal_size_limit) is also the size it is
	// filled out to at open (wal.go): the file never shrinks below it.
	walLimit := cmp.Or(opts.walLimit, walSizeLimit)
	s := &Store{path: path, memory: path == "" || path == Memory, log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.memory {
		// Each connection to ":memory:" is its own empty database, and a
		// shared-cache memory database answers concurrent access with
		// SQLITE_LOCKED, which busy_timeout does not cover. One connection
		// that never closes is the only correct choice; database/sql
		// serialises the readers and the writer on it.
		db, err := sqlx.Open("sqlite", "file:"+Memory+"?_pragma=foreign_keys(1)&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("open sqlite in-memory: %w", err)
		}
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
		s.w, s.r = db, db
	} else {
		lock, err := lockFile(path)
		if err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		s.lock = lock
		// No connection checkpoints by itself: the checkpointer does,
		// and sees its errors (checkpoint.go, "A failed fsync").
		dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + pragmas + "&_pragma=synchronous(" + sync + ")" +
			"&_pragma=wal_autocheckpoint(0)" +
			"&_pragma=journal_size_limit(" + strconv.Itoa(walLimit) + ")"
		w, err := sqlx.Open("sqlite", dsn)
		if err != nil {
			_ = lock.release()
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		// One writer: SQLite has one write lock anyway, and a single
		// connection turns waiting on it into queueing in our own writer.
		w.SetMaxOpenConns(1)
		w.SetMaxIdleConns(1)
		w.SetConnMaxLifetime(0)
		r, err := sqlx.Open("sqlite", dsn)
		if err != nil {
			_ = w.Close()
			_ = lock.release()
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		n := max(4, runtime.GOMAXPROCS(0))
		r.SetMaxOpenConns(n)
		r.SetMaxIdleConns(n)
		s.w, s.r = w, r
		if s.ckpt, err = startCheckpointer(dsn, s.log); err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
	}
	if !s.memory {
		if err := s.checkWritable(ctx); err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		s.persistWAL(ctx)
	}
	if err := s.migrate(ctx); err != nil {
		// A full disk says so: after a clean stop the start creates the
		// WAL index again, which needs a page, before it can migrate.
		err = s.withDiskNote(err)
		_ = s.Close()
		return nil, err
	}
	if !s.memory {
		// See wal.go. Without it the server is as correct, only slower
		// to commit until the WAL has grown once, so a failure (a full
		// disk) is logged, not fatal.
		if err := preallocateWAL(path, int64(walLimit)); err != nil {
			s.log.Warn("the WAL grows as it is written", slog.Any("err", err))
		}
	}
	if err := s.loadStaged(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := s.prepare(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// persistWAL has the writer's connection, the last to close (Close), keep
// the WAL and its index (-shm) when it closes, rather than SQLite's
// default of removing them at a clean close (SQLITE_FCNTL_PERSIST_WAL).
// A start must otherwise create them again, and the index takes a page of
// the disk: a server stopped cleanly on a full disk could not start on
// it, where one that crashed there could. The WAL is 64 MiB from every
// open anyway (wal.go), so keeping it holds no more disk than a running
// server does. Without it (the writer's connection replaced after an
// error, the call failing) the store is as correct, and a clean stop
// removes them as before.
func (s *Store) persistWAL(ctx context.Context) {
	conn, err := s.w.Conn(ctx)
	if err == nil {
		err = conn.Raw(func(dc any) error {
			fc, ok := dc.(sqlite.FileControl)
			if !ok {
				return errors.New("the driver has no file control")
			}
			_, err := fc.FileControlPersistWAL("main", 1)
			return err
		})
		conn.Close()
	}
	if err != nil {
		s.log.Warn("the WAL is removed at a clean stop", slog.Any("err", err))
	}
}

// prepare prepares writeQueries on the writer pool. It must run while no
// transaction is open: the pool has one connection, and a Prepare waiting
// for it behind an open transaction would never return.
func (s *Store) prepare(ctx context.Context) error {
	s.prepared = make(map[string]*sql.Stmt, len(writeQueries))
	for _, q := range writeQueries {
		st, err := s.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		s.prepared[q] = st
	}
	return nil
}

// Close closes both pools and releases the file.
func (s *Store) Close() error {
	var errs []error
	if s.ckpt != nil {
		// First: SQLite checkpoints and removes the WAL when the last
		// connection closes, which is then the writer's. (Closing the
		// checkpointer's own is not the last: the others hold the
		// database.)
		errs = append(errs, s.ckpt.stop())
		// Asked once the checkpointer has stopped: a checkpoint that
		// was running as Close began (a shutdown's last commits wake
		// it) fails its fsync during stop, not before.
		select {
		case <-s.ckpt.lost:
			// SQLite checkpoints when its last connection closes, and
			// after a failed fsync that must not happen (checkpoint.go,
			// "A failed fsync"): the connections are left to the
			// process's exit, and the lock with them.
			return fmt.Errorf("close sqlite %s: not closed after a checkpoint's failed fsync, so that the next start copies the whole WAL again", s.path)
		default:
		}
	}
	for _, st := range s.prepared {
		errs = append(errs, st.Close())
	}
	if s.r != s.w {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	if s.lock != nil {
		// After the pools: the lock outlives every connection.
		errs = append(errs, s.lock.release())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close sqlite %s: %w", s.path, err)
	}
	return nil
}

// Lost delivers, once, the error of a checkpoint whose fsync failed: the
// database file may lack writes the disk dropped, and only a new process
// can copy the WAL into it again (checkpoint.go, "A failed fsync"). The
// process should exit without closing the Store. Nil for an in-memory
// database, which never checkpoints.
func (s *Store) Lost() <-chan error {
	if s.ckpt == nil {
		return nil
	}
	return s.ckpt.failed
}

// migrate applies the embedded migrations not yet recorded in schema_version,
// each in its own transaction with its version row.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL DEFAULT (unixepoch()))`); err != nil {
		return fmt.Errorf("migrate: create schema_version: %w", err)
	}
	// Every version not yet applied runs, not only those above the newest:
	// migrations are numbered when they are written, and a database may
	// have been migrated by a build that had 0003 but not yet 0002.
	var applied []int
	if err := s.w.SelectContext(ctx, &applied, `SELECT version FROM schema_version`); err != nil {
		return fmt.Errorf("migrate: read schema_version: %w", err)
	}
	applied, err := s.renumberCommandAcks(ctx, applied)
	if err != nil {
		return err
	}
	pending, err := store.PendingMigrations(migrations, "migrations", applied)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, m := range pending {
		tx, err := s.w.BeginTxx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate %s: begin: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, m.Version); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migrate %s: record version: %w", m.Name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate %s: commit: %w", m.Name, err)
		}
	}
	return nil
}

// renumberCommandAcks records a database's command_acks migration under
// the version it has now. The builds of the branch that added it (before
// the merge b13e3a6) numbered it 0005, and the merge made it 0006 since
// another branch's 0005 was the turn digests. Their databases hold
// version 5, the acked_command_id column and no turn_digests table: read
// as they are, 0005 would never run and 0006 would fail (a duplicate
// column), so the server refused to start on them. Recorded as 6, the
// turn digests run as any missing migration does.
func (s *Store) renumberCommandAcks(ctx context.Context, applied []int) ([]int, error) {
	if !slices.Contains(applied, 5) || slices.Contains(applied, 6) {
		return applied, nil
	}
	var acks, digests int
	if err := s.w.GetContext(ctx, &acks, `SELECT COUNT(*) FROM pragma_table_info('sessions') WHERE name = 'acked_command_id'`); err != nil {
		return nil, fmt.Errorf("migrate: read the sessions columns: %w", err)
	}
	if err := s.w.GetContext(ctx, &digests, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'turn_digests'`); err != nil {
		return nil, fmt.Errorf("migrate: read the tables: %w", err)
	}
	if acks == 0 || digests != 0 {
		return applied, nil
	}
	if _, err := s.w.ExecContext(ctx, `UPDATE schema_version SET version = 6 WHERE version = 5`); err != nil {
		return nil, fmt.Errorf("migrate: record command_acks as 0006: %w", err)
	}
	applied = slices.DeleteFunc(applied, func(v int) bool { return v == 5 })
	return append(applied, 6), nil
}

// SchemaVersion returns the newest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := s.r.GetContext(ctx, &v, `SELECT COALESCE(MAX(version), 0) FROM schema_version`); err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return v, nil
}

// Exclusive reports that this process owns the database alone (Open locks
// the file), so no sandbox is connected to a session when a server starts
// on it; see store.Exclusive.
func (s *Store) Exclusive() bool { return true }

// AppendsNUL reports that appended text may hold NUL: SQLite stores and
// reads a TEXT value by its length, NUL and all (store.NULAppender).
func (s *Store) AppendsNUL() bool { return true }

// CheckWrite writes a row that needs new pages and deletes it again, each
// in its own transaction, so it fails as a commit would while the disk (or
// the database's page limit) is full; see store.WriteChecker.
func (s *Store) CheckWrite(ctx context.Context) error {
	// Deleted rows leave free pages that a write reuses before it needs
	// new ones: the probe is larger than them (up to a bound; with that
	// many pages free, writes do have room).
	var free, size int64
	if err := s.w.GetContext(ctx, &free, `PRAGMA freelist_count`); err != nil {
		return fmt.Errorf("check write: %w", err)
	}
	if err := s.w.GetContext(ctx, &size, `PRAGMA page_size`); err != nil {
		return fmt.Errorf("check write: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO write_probe (body) VALUES (zeroblob(?))`, (min(free, 256)+4)*size); err != nil {
		return s.withDiskNote(fmt.Errorf("check write: %w", err))
	}
	if _, err := s.w.ExecContext(ctx, `DELETE FROM write_probe`); err != nil {
		return s.withDiskNote(fmt.Errorf("check write: clean up: %w", err))
	}
	return nil
}

// Ping checks that the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.r.GetContext(ctx, &one, `SELECT 1`); err != nil {
		return fmt.Errorf("ping sqlite: %w", err)
	}
	return nil
}

type sessionRow struct {
	ID              string         `db:"id"`
	Status          string         `db:"status"`
	Summary         sql.NullString `db:"summary"`
	Project         sql.NullString `db:"project"`
	CreatedAt       int64          `db:"created_at"`
	LastHeartbeat   sql.NullInt64  `db:"last_heartbeat"`
	Rev             int64          `db:"rev"`
	LastCommandID   int64          `db:"last_command_id"`
	CurrentInstance string         `db:"current_instance"`
	AckedCommandID  int64          `db:"acked_command_id"`
	Version         int64          `db:"version"`
	StreamEpoch     int64          `db:"stream_epoch"`
}

const sessionCols = `id, status, summary, project, created_at, last_heartbeat, rev, last_command_id, current_instance, acked_command_id, version, stream_epoch`

func (r sessionRow) record() protocol.Session {
	s := protocol.Session{ID: r.ID, Status: protocol.SessionStatus(r.Status), CreatedAt: r.CreatedAt,
		AckedCommandID: r.AckedCommandID, PendingCommands: max(r.LastCommandID-r.AckedCommandID, 0)}
	if r.Summary.Valid {
		s.Summary = &r.Summary.String
	}
	if r.Project.Valid {
		s.Project = &r.Project.String
	}
	if r.LastHeartbeat.Valid {
		s.LastHeartbeat = &r.LastHeartbeat.Int64
	}
	return s
}

func notFound(id string) error {
	return protocol.Errorf(protocol.CodeNotFound, "session %q not found", id)
}

// Session returns one session record.
func (s *Store) Session(ctx context.Context, id string) (protocol.Session, error) {
	var row sessionRow
	err := s.r.GetContext(ctx, &row, `SELECT `+sessionCols+` FROM sessions WHERE id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return protocol.Session{}, notFound(id)
	}
	if err != nil {
		return protocol.Session{}, fmt.Errorf("get session %s: %w", id, err)
	}
	return row.record(), nil
}

// Sessions lists sessions oldest first; project "" means all.
func (s *Store) Sessions(ctx context.Context, project string) ([]protocol.Session, error) {
	var rows []sessionRow
	q := `SELECT ` + sessionCols + ` FROM sessions`
	var args []any
	if project != "" {
		q += ` WHERE project = ?`
		args = append(args, project)
	}
	q += ` ORDER BY created_at, rowid`
	if err := s.r.SelectContext(ctx, &rows, q, args...); err != nil {
		return nil, fmt.Errorf("list sessions project=%q: %w", project, err)
	}
	out := make([]protocol.Session, len(rows))
	for i, r := range rows {
		out[i] = r.record()
	}
	return out, nil
}

// LoadSessions returns every session with its internal state, oldest first.
// The service calls it once at start.
func (s *Store) LoadSessions(ctx context.Context) ([]store.Session, error) {
	tx, err := s.r.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("load sessions: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	var rows []sessionRow
	if err := tx.SelectContext(ctx, &rows, `SELECT `+sessionCols+` FROM sessions ORDER BY created_at, rowid`); err != nil {
		return nil, fmt.Errorf("load sessions: %w", err)
	}
	var inst []struct {
		SessionID string `db:"session_id"`
		Instance  string `db:"instance"`
	}
	if err := tx.SelectContext(ctx, &inst, `SELECT session_id, instance FROM sandbox_instances ORDER BY session_id, first_seen, instance`); err != nil {
		return nil, fmt.Errorf("load sandbox instances: %w", err)
	}
	byID := map[string][]string{}
	for _, i := range inst {
		byID[i.SessionID] = append(byID[i.SessionID], i.Instance)
	}
	out := make([]store.Session, len(rows))
	for i, r := range rows {
		out[i] = store.Session{Session: r.record(), Rev: r.Rev, LastCommandID: r.LastCommandID, CurrentInstance: r.CurrentInstance, Instances: byID[r.ID], Version: r.Version, StreamEpoch: r.StreamEpoch}
	}
	return out, nil
}

// Events returns a session's event log in order, staged events included.
func (s *Store) Events(ctx context.Context, id string) ([]store.Event, error) {
	return s.readLog(ctx, id, 0, -1)
}

// Artifacts returns a session's artifacts ordered by seq.
func (s *Store) Artifacts(ctx context.Context, id string) ([]store.Artifact, error) {
	list, _, err := s.artifactsBySeq(ctx, id, 0, -1, 0)
	return list, err
}

// artifactRow is an artifact as stored; Appended > 0 means it has
// pending appends to merge into Body.
type artifactRow struct {
	Seq      int64  `db:"seq"`
	Rev      int64  `db:"rev"`
	Body     []byte `db:"body"`
	Appended int64  `db:"appended"`
}

// artifactCols selects artifactRows; a WHERE clause follows.
const artifactCols = `a.seq, a.rev, b.body, a.appended FROM artifacts a
	JOIN artifact_bodies b ON b.session_id = a.session_id AND b.seq = a.seq`

// withAppends returns the rows as artifacts, merging pending appends into
// the bodies of the rows that have them; every other body is returned as
// stored. It reads in tx, the transaction the rows came from.
func withAppends(ctx context.Context, tx *sqlx.Tx, id string, rows []artifactRow) ([]store.Artifact, error) {
	out := make([]store.Artifact, len(rows))
	for i, r := range rows {
		out[i] = store.Artifact{Seq: r.Seq, Rev: r.Rev, Body: r.Body}
		if r.Appended == 0 {
			continue
		}
		var appends []store.FieldAppend
		if err := tx.SelectContext(ctx, &appends, `SELECT field, text FROM artifact_appends WHERE session_id = ? AND seq = ? ORDER BY n`, id, r.Seq); err != nil {
			return nil, fmt.Errorf("read appends session=%s seq=%d: %w", id, r.Seq, err)
		}
		body, err := store.MergeAppends(r.Body, r.Rev, appends)
		if err != nil {
			return nil, fmt.Errorf("artifact session=%s seq=%d: %w", id, r.Seq, err)
		}
		out[i].Body = body
	}
	return out, nil
}

// ArtifactsSince returns the artifacts whose rev is greater than after, in
// rev order, with the session's rev, read in one transaction so the rev
// covers exactly those artifacts.
func (s *Store) ArtifactsSince(ctx context.Context, id string, after int64) (store.Snapshot, error) {
	return s.artifactsSince(ctx, id, after, -1, 0)
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
// limit is -1, else a page cut at limit and maxBytes.
func (s *Store) artifactsSince(ctx context.Context, id string, after int64, limit, maxBytes int) (store.Snapshot, error) {
	tx, err := s.r.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("artifact snapshot session=%s: begin: %w", id, err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	var snap store.Snapshot
	err = tx.QueryRowxContext(ctx, `SELECT rev, created_at FROM sessions WHERE id = ?`, id).Scan(&snap.Rev, &snap.Created)
	if errors.Is(err, sql.ErrNoRows) {
		return snap, notFound(id)
	}
	if err != nil {
		return snap, fmt.Errorf("artifact snapshot session=%s: %w", id, err)
	}
	// Unpaged, every artifact above after, as the store holds them (not
	// cut at the session row's revision: a reader gets what is stored).
	upTo := int64(math.MaxInt64)
	if limit > 0 {
		upTo, snap.More, err = cutPage(ctx, tx, `SELECT a.rev AS k, `+sizeCol+` WHERE a.session_id = ? AND a.rev > ? ORDER BY a.rev LIMIT ?`, id, after, limit, maxBytes)
		if err != nil {
			return snap, fmt.Errorf("artifact snapshot session=%s after=%d: %w", id, after, err)
		}
	}
	var rows []artifactRow
	// Every artifact above after up to the page's last: the cut was read
	// in this transaction, so these are exactly the ones it counted.
	if err := tx.SelectContext(ctx, &rows, `SELECT `+artifactCols+` WHERE a.session_id = ? AND a.rev > ? AND a.rev <= ? ORDER BY a.rev`, id, after, upTo); err != nil {
		return snap, fmt.Errorf("artifact snapshot session=%s after=%d: %w", id, after, err)
	}
	if snap.Artifacts, err = withAppends(ctx, tx, id, rows); err != nil {
		return snap, fmt.Errorf("artifact snapshot: %w", err)
	}
	return snap, nil
}

// sizeCol is an artifact's size as stored (its body and what was appended
// to it) FROM the artifacts joined to their bodies; a WHERE clause
// follows. octet_length reads the length from the record's header
// without loading the text, so a page is cut before any body is read.
const sizeCol = `octet_length(b.body) + a.appended AS n FROM artifacts a
	JOIN artifact_bodies b ON b.session_id = a.session_id AND b.seq = a.seq`

// cutPage runs q (key and size of the candidates, in page order, bound to
// id, after and a row limit) for limit+1 candidates and returns the key of
// the page's last artifact as store.PageCut cuts it (after when there is
// none) and whether candidates were left after it.
func cutPage(ctx context.Context, tx *sqlx.Tx, q, id string, after int64, limit, maxBytes int) (last int64, more bool, err error) {
	var rows []struct {
		Key  int64 `db:"k"`
		Size int64 `db:"n"`
	}
	if err := tx.SelectContext(ctx, &rows, q, id, after, limit+1); err != nil {
		return 0, false, err
	}
	sizes := make([]int64, len(rows))
	for i, r := range rows {
		sizes[i] = r.Size
	}
	n := store.PageCut(sizes, limit, maxBytes)
	if n == 0 {
		return after, false, nil
	}
	return rows[n-1].Key, n < len(rows), nil
}

// ArtifactsBySeq returns the artifacts with seq > after, in seq order,
// cut at limit artifacts and maxBytes of bodies (store.PageCut).
func (s *Store) ArtifactsBySeq(ctx context.Context, id string, after int64, limit, maxBytes int) ([]store.Artifact, bool, error) {
	if limit <= 0 {
		return nil, false, fmt.Errorf("list artifacts session=%s: limit %d: must be positive", id, limit)
	}
	return s.artifactsBySeq(ctx, id, after, limit, maxBytes)
}

// artifactsBySeq reads artifacts with seq > after in seq order, all of
// them when limit is -1, else a page cut at limit and maxBytes, in one
// read transaction.
func (s *Store) artifactsBySeq(ctx context.Context, id string, after int64, limit, maxBytes int) ([]store.Artifact, bool, error) {
	tx, err := s.r.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, false, fmt.Errorf("list artifacts session=%s: begin: %w", id, err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	if err := exists(ctx, tx, id); err != nil {
		return nil, false, err
	}
	upTo, more := int64(math.MaxInt64), false
	if limit > 0 {
		upTo, more, err = cutPage(ctx, tx, `SELECT a.seq AS k, `+sizeCol+` WHERE a.session_id = ? AND a.seq > ? ORDER BY a.seq LIMIT ?`, id, after, limit, maxBytes)
		if err != nil {
			return nil, false, fmt.Errorf("list artifacts session=%s after=%d: %w", id, after, err)
		}
	}
	var rows []artifactRow
	if err := tx.SelectContext(ctx, &rows, `SELECT `+artifactCols+` WHERE a.session_id = ? AND a.seq > ? AND a.seq <= ? ORDER BY a.seq`, id, after, upTo); err != nil {
		return nil, false, fmt.Errorf("list artifacts session=%s after=%d: %w", id, after, err)
	}
	list, err := withAppends(ctx, tx, id, rows)
	return list, more, err
}

// Commands returns the commands with after < id <= upTo, in id order.
func (s *Store) Commands(ctx context.Context, id string, after, upTo int64) ([]store.Command, error) {
	var rows []store.Command
	err := s.r.SelectContext(ctx, &rows, `SELECT id, body, created_at AS createdat FROM commands WHERE session_id = ? AND id > ? AND id <= ? ORDER BY id`, id, after, upTo)
	if err != nil {
		return nil, fmt.Errorf("read commands session=%s after=%d: %w", id, after, err)
	}
	return rows, nil
}

// CommandByKey returns the session's command stored with Idempotency-Key
// key (the commands_idem_key index finds it).
func (s *Store) CommandByKey(ctx context.Context, id, key string) (store.Command, bool, error) {
	var c store.Command
	err := s.r.GetContext(ctx, &c, `SELECT id, body, created_at AS createdat, idem_key AS key FROM commands WHERE session_id = ? AND idem_key = ?`, id, key)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Command{}, false, nil
	}
	if err != nil {
		return store.Command{}, false, fmt.Errorf("read command session=%s by key: %w", id, err)
	}
	return c, true, nil
}

func exists(ctx context.Context, tx *sqlx.Tx, id string) error {
	var one int
	err := tx.GetContext(ctx, &one, `SELECT 1 FROM sessions WHERE id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound(id)
	}
	if err != nil {
		return fmt.Errorf("find session %s: %w", id, err)
	}
	return nil
}

// Commit applies ops in one write transaction: all or nothing.
func (s *Store) Commit(ctx context.Context, ops []store.Op) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return s.withDiskNote(fmt.Errorf("commit %d ops: begin: %w", len(ops), err))
	}
	// The statements run without ctx's cancellation: given a context that
	// can end, the driver watches every statement from a goroutine of its
	// own, about 4% of the server's CPU on single-event ingest. stmtCache
	// checks ctx before each statement instead, so a commit still stops
	// at its deadline between statements; a statement itself is not
	// interrupted (a lock wait ends at busy_timeout).
	outer := ctx
	ctx = context.WithoutCancel(ctx)
	stmts := &stmtCache{tx: tx, outer: outer, prepared: s.prepared, byQuery: map[string]*sql.Stmt{}}
	top := newTops(s, stmts)
	for i := 0; i < len(ops); {
		// A run of AppendEvents (one per request of a group) becomes a
		// few multi-row inserts. Their rows are independent of each other,
		// so inserting them together at the run's place changes nothing.
		j := i
		for j < len(ops) {
			if _, ok := ops[j].(store.AppendEvents); !ok {
				break
			}
			j++
		}
		var err error
		if j > i {
			err = insertEvents(ctx, stmts, top, ops[i:j])
		} else {
			switch op := ops[i].(type) {
			case store.Unstage:
				err = top.unstage(ctx, stmts)
			case store.DeleteSession:
				top.delete(op.ID)
				err = apply(ctx, stmts, op)
			default:
				err = apply(ctx, stmts, op)
			}
			j = i + 1
		}
		if err != nil {
			stmts.close()
			_ = tx.Rollback()
			return s.withDiskNote(fmt.Errorf("commit %d ops: %w", len(ops), err))
		}
		i = j
	}
	stmts.close()
	if err := tx.Commit(); err != nil {
		return s.withDiskNote(fmt.Errorf("commit %d ops: %w", len(ops), err))
	}
	top.committed()
	if s.ckpt != nil {
		if err := s.ckpt.committed(ctx, s.w); err != nil {
			// The commit stands; the writer's own autocheckpoint
			// bounds the WAL until counting works again.
			s.log.Warn("after commit", slog.Any("err", err))
		}
	}
	return nil
}

// execer is what applying ops needs of a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// stmtCache binds each statement to the commit's transaction once and
// reuses it for every row of the group. Parsing the SQL for each of a
// 500-event batch's inserts was about a fifth of the server's CPU on
// batched ingest. Statements in prepared are bound with StmtContext, which
// reuses the connection's prepared statement (database/sql prepares it
// again on the transaction's connection if that is a new one); any other
// query is prepared in the transaction.
type stmtCache struct {
	tx *sqlx.Tx
	// outer is the commit's context: its end fails the next statement.
	outer    context.Context
	prepared map[string]*sql.Stmt
	byQuery  map[string]*sql.Stmt
}

func (c *stmtCache) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// queryInt64 runs a query that returns one integer.
func (c *stmtCache) queryInt64(ctx context.Context, query string, args ...any) (int64, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return 0, err
	}
	var n int64
	err = st.QueryRowContext(ctx, args...).Scan(&n)
	return n, err
}

func (c *stmtCache) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if err := c.outer.Err(); err != nil {
		return nil, err
	}
	st, ok := c.byQuery[query]
	if !ok {
		if p := c.prepared[query]; p != nil {
			st = c.tx.StmtContext(ctx, p)
		} else {
			var err error
			if st, err = c.tx.PrepareContext(ctx, query); err != nil {
				return nil, err
			}
		}
		c.byQuery[query] = st
	}
	return st, nil
}

func (c *stmtCache) close() {
	for _, st := range c.byQuery {
		_ = st.Close()
	}
}

// The statements Commit runs. They are prepared once, when the store
// opens, on the writer connection; see stmtCache.
const (
	qCreateSession   = `INSERT INTO sessions (id, status, summary, project, created_at, last_heartbeat) VALUES (?, ?, ?, ?, ?, ?)`
	qDeleteSession   = `DELETE FROM sessions WHERE id = ?`
	qUpdateSession   = `UPDATE sessions SET status = ?, summary = ?, last_heartbeat = ?, rev = ?, last_command_id = ?, current_instance = ?, acked_command_id = ?, version = ?, stream_epoch = ? WHERE id = ?`
	qExpect          = `UPDATE sessions SET version = version WHERE id = ? AND version = ? AND (? = 0 OR created_at = ?)`
	qPutArtifact     = `INSERT INTO artifacts (session_id, seq, rev) VALUES (?, ?, ?) ON CONFLICT (session_id, seq) DO UPDATE SET rev = excluded.rev, appended = 0`
	qPutArtifactBody = `INSERT INTO artifact_bodies (session_id, seq, body) VALUES (?, ?, ?) ON CONFLICT (session_id, seq) DO UPDATE SET body = excluded.body`
	qDropAppends     = `DELETE FROM artifact_appends WHERE session_id = ? AND seq = ?`
	qPutHeadRev      = `UPDATE artifacts SET rev = ? WHERE session_id = ? AND seq = ?`
	qPutHeadBody     = `UPDATE artifact_bodies SET body = ? WHERE session_id = ? AND seq = ?`
	qAddCommand      = `INSERT INTO commands (session_id, id, body, created_at, idem_key) VALUES (?, ?, ?, ?, NULLIF(?, ''))`
	qAddInstance     = `INSERT INTO sandbox_instances (session_id, instance, first_seen) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`
	qAppendRev       = `UPDATE artifacts SET rev = ?, appended = appended + ? WHERE session_id = ? AND seq = ?`
	qAppendText      = `INSERT INTO artifact_appends (session_id, seq, n, field, text) VALUES (?1, ?2, (SELECT COALESCE(MAX(n), 0) + 1 FROM artifact_appends WHERE session_id = ?1 AND seq = ?2), ?3, ?4)`
	qSetSandboxToken = `INSERT INTO sandbox_tokens (session_id, hash, created_at) VALUES (?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at`
)

var writeQueries = slices.Concat([]string{qUnstage, qClearStaged, qDeleteStaged, qDeleteEventBodies, qTopPos, qExpect, qCreateSession, qDeleteSession, qUpdateSession, qPutArtifact, qPutArtifactBody, qDropAppends, qPutHeadRev, qPutHeadBody, qAddCommand, qAddInstance, qAppendRev, qAppendText, qSetSandboxToken, qPutEventBody, insertEventsQueries.big, stageEventsQueries.big},
	insertEventsQueries.chunks, insertEventsQueries.runs, stageEventsQueries.chunks, stageEventsQueries.runs)

// eventChunks are the row counts of the event inserts, largest first: a
// run of events is inserted as few statements of these sizes. One
// statement per row cost about 4µs of database/sql and driver overhead
// per event (an interrupt watcher per Exec among it), a third of the
// writer's time on batched ingest.
var eventChunks = [...]int{64, 16, 4, 1}

// eventQueries insert event rows into one table. chunks[i] inserts
// eventChunks[i] rows of any sessions. runs[i] (for every chunk size but
// 1) inserts eventChunks[i] rows of one session and one instance, which
// it binds once for the statement rather than on every row: the driver
// copies each bound text into memory of its own, and binding was a tenth
// of the writer's time on batched ingest.
//
// big inserts one row whose body is in event_bodies: an empty body and
// the body's id (see inLeaf).
type eventQueries struct {
	chunks, runs []string
	big          string
}

var insertEventsQueries, stageEventsQueries = eventQueriesFor("events"), eventQueriesFor("staged_events")

func eventQueriesFor(table string) eventQueries {
	head := `INSERT INTO ` + table + ` (session_id, pos, instance, agent_seq, body) `
	q := eventQueries{big: `INSERT INTO ` + table + ` (session_id, pos, instance, agent_seq, body, body_id) VALUES (?, ?, ?, ?, '', ?)`}
	for _, n := range eventChunks {
		q.chunks = append(q.chunks, head+`VALUES `+strings.TrimSuffix(strings.Repeat(`(?, ?, ?, ?, ?), `, n), ", "))
		if n == 1 {
			continue
		}
		// Anonymous parameters, numbered by where they appear: the first
		// two are the session and the instance. (Numbered ones, ?1 used
		// on every row, made the driver ask SQLite each parameter's name,
		// which it finds by a scan: quadratic in the rows.)
		q.runs = append(q.runs, head+`SELECT ?, column1, ?, column2, column3 FROM (VALUES `+strings.TrimSuffix(strings.Repeat(`(?, ?, ?), `, n), ", ")+`)`)
	}
	return q
}

type eventInsert struct {
	session string
	e       *store.Event
}

// leafRow is the most bytes of ids and body an events row may hold and
// still be kept whole in its leaf. events is a WITHOUT ROWID table, whose
// leaf keeps at most 1,002 bytes of a row's record on 4 KiB pages (SQLite's
// default, which Open keeps); the record adds to the session id, the
// instance and the body its header and two integers, at most 28 bytes. A
// bigger row would keep about 490 bytes in the leaf and the rest on an
// overflow page of its own: for an event of 1 to 4 KB, a page each.
const leafRow = 1002 - 32

// inLeaf reports whether the event's row fits in its leaf, body and all;
// one that does not has its body stored in event_bodies (migration 0012).
func inLeaf(session string, e *store.Event) bool {
	return len(session)+len(e.Instance)+len(e.Body) <= leafRow
}

// insertEvents writes the events of ops, all AppendEvents, once top has
// checked their positions: staged (store.AppendEvents.Stage, or the
// session has staged events) or into the log.
func insertEvents(ctx context.Context, ex execer, top *tops, ops []store.Op) error {
	var direct, staged, bigDirect, bigStaged []eventInsert
	for _, op := range ops {
		ae := op.(store.AppendEvents)
		if err := top.check(ctx, ae); err != nil {
			return err
		}
		stage := ae.Stage || top.hasStaged(ae.SessionID)
		if stage && len(ae.Events) > 0 {
			top.staged[ae.SessionID] = true
		}
		for i := range ae.Events {
			r := eventInsert{ae.SessionID, &ae.Events[i]}
			switch big := !inLeaf(r.session, r.e); {
			case stage && big:
				bigStaged = append(bigStaged, r)
			case stage:
				staged = append(staged, r)
			case big:
				bigDirect = append(bigDirect, r)
			default:
				direct = append(direct, r)
			}
		}
	}
	if err := insertChunked(ctx, ex, insertEventsQueries, direct); err != nil {
		return err
	}
	if err := insertBig(ctx, ex, insertEventsQueries, bigDirect); err != nil {
		return err
	}
	if err := insertChunked(ctx, ex, stageEventsQueries, staged); err != nil {
		return err
	}
	return insertBig(ctx, ex, stageEventsQueries, bigStaged)
}

// insertBig inserts rows whose bodies do not fit in a leaf of events (see
// inLeaf): each body into event_bodies, then its row with the body's id.
// One row at a time: the body's write outweighs a statement's cost.
func insertBig(ctx context.Context, ex execer, q eventQueries, rows []eventInsert) error {
	for _, r := range rows {
		res, err := ex.ExecContext(ctx, qPutEventBody, string(r.e.Body))
		if err != nil {
			return fmt.Errorf("append event session=%s pos=%d: body: %w", r.session, r.e.Pos, err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return fmt.Errorf("append event session=%s pos=%d: body id: %w", r.session, r.e.Pos, err)
		}
		if _, err := ex.ExecContext(ctx, q.big, r.session, r.e.Pos, r.e.Instance, r.e.AgentSeq, id); err != nil {
			return fmt.Errorf("append event session=%s pos=%d: %w", r.session, r.e.Pos, err)
		}
	}
	return nil
}

// insertChunked inserts rows with q: each run of rows of one session and
// instance by q.runs while it has 4 or more left, what is left of the
// runs by q.chunks. The order of the rows does not matter: both tables
// are read in position order.
func insertChunked(ctx context.Context, ex execer, q eventQueries, rows []eventInsert) error {
	// The leftovers go over the rows already read: no allocation for the
	// common group of single events from different sessions.
	rest := rows[:0]
	args := make([]any, 0, 5*min(len(rows), eventChunks[0]))
	for i := 0; i < len(rows); {
		k := i + 1
		for k < len(rows) && rows[k].session == rows[i].session && rows[k].e.Instance == rows[i].e.Instance {
			k++
		}
		run := rows[i:k]
		i = k
		for c, n := range eventChunks[:len(eventChunks)-1] {
			for len(run) >= n {
				args = append(args[:0], run[0].session, run[0].e.Instance)
				for _, r := range run[:n] {
					args = append(args, r.e.Pos, r.e.AgentSeq, string(r.e.Body))
				}
				if _, err := ex.ExecContext(ctx, q.runs[c], args...); err != nil {
					return fmt.Errorf("append %d events from session=%s pos=%d: %w", n, run[0].session, run[0].e.Pos, err)
				}
				run = run[n:]
			}
		}
		rest = append(rest, run...)
	}
	for c, n := range eventChunks {
		for len(rest) >= n {
			args = args[:0]
			for _, r := range rest[:n] {
				args = append(args, r.session, r.e.Pos, r.e.Instance, r.e.AgentSeq, string(r.e.Body))
			}
			if _, err := ex.ExecContext(ctx, q.chunks[c], args...); err != nil {
				return fmt.Errorf("append %d events from session=%s pos=%d: %w", n, rest[0].session, rest[0].e.Pos, err)
			}
			rest = rest[n:]
		}
	}
	return nil
}

func apply(ctx context.Context, ex execer, op store.Op) error {
	switch op := op.(type) {
	case store.Expect:
		// The transaction holds the database's write lock, so what this
		// finds holds until the commit.
		res, err := ex.ExecContext(ctx, qExpect, op.SessionID, op.Version, op.CreatedAt, op.CreatedAt)
		if err != nil {
			return fmt.Errorf("expect session %s version %d: %w", op.SessionID, op.Version, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return &store.StaleError{IDs: []string{op.SessionID}}
		}
	case store.CreateSession:
		r := op.Session
		_, err := ex.ExecContext(ctx, qCreateSession,
			r.ID, r.Status, r.Summary, r.Project, r.CreatedAt, r.LastHeartbeat)
		if err != nil {
			return fmt.Errorf("create session %s: %w", r.ID, err)
		}
	case store.DeleteSession:
		// event_bodies has no foreign key to cascade (migration 0012):
		// its rows go first, while the rows naming them are there.
		if _, err := ex.ExecContext(ctx, qDeleteEventBodies, op.ID); err != nil {
			return fmt.Errorf("delete session %s: event bodies: %w", op.ID, err)
		}
		// staged_events has no foreign key to cascade (migration 0009).
		if _, err := ex.ExecContext(ctx, qDeleteStaged, op.ID); err != nil {
			return fmt.Errorf("delete session %s: staged events: %w", op.ID, err)
		}
		if _, err := ex.ExecContext(ctx, qDeleteSession, op.ID); err != nil {
			return fmt.Errorf("delete session %s: %w", op.ID, err)
		}
	case store.UpdateSession:
		r := op.Session
		res, err := ex.ExecContext(ctx, qUpdateSession,
			r.Status, r.Summary, r.LastHeartbeat, r.Rev, r.LastCommandID, r.CurrentInstance, r.AckedCommandID, r.Version, r.StreamEpoch, r.ID)
		if err != nil {
			return fmt.Errorf("update session %s: %w", r.ID, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return fmt.Errorf("update session %s: %w", r.ID, notFound(r.ID))
		}
	case store.PutArtifacts:
		for _, a := range op.Artifacts {
			// The full body replaces the artifact and whatever was
			// appended to it.
			_, err := ex.ExecContext(ctx, qPutArtifact,
				op.SessionID, a.Seq, a.Rev)
			if err != nil {
				return fmt.Errorf("put artifact session=%s seq=%d: %w", op.SessionID, a.Seq, err)
			}
			_, err = ex.ExecContext(ctx, qPutArtifactBody,
				op.SessionID, a.Seq, string(a.Body))
			if err != nil {
				return fmt.Errorf("put artifact session=%s seq=%d: body: %w", op.SessionID, a.Seq, err)
			}
			if _, err := ex.ExecContext(ctx, qDropAppends, op.SessionID, a.Seq); err != nil {
				return fmt.Errorf("put artifact session=%s seq=%d: drop appends: %w", op.SessionID, a.Seq, err)
			}
		}
	case store.PutArtifactHeads:
		for _, a := range op.Artifacts {
			if err := putArtifactHead(ctx, ex, op.SessionID, a); err != nil {
				return err
			}
		}
	case store.AppendArtifacts:
		for _, a := range op.Appends {
			if err := appendArtifact(ctx, ex, op.SessionID, a); err != nil {
				return err
			}
		}
	case store.AddCommand:
		c := op.Command
		_, err := ex.ExecContext(ctx, qAddCommand, op.SessionID, c.ID, string(c.Body), c.CreatedAt, c.Key)
		if err != nil {
			return fmt.Errorf("add command session=%s id=%d: %w", op.SessionID, c.ID, err)
		}
	case store.AddInstance:
		_, err := ex.ExecContext(ctx, qAddInstance, op.SessionID, op.Instance, op.At)
		if err != nil {
			return fmt.Errorf("add instance session=%s: %w", op.SessionID, err)
		}
	case store.SetSandboxToken:
		if err := setSandboxToken(ctx, ex, op); err != nil {
			return err
		}
	case store.PutTurnDigest:
		if err := putTurnDigest(ctx, ex, op); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown store op %T", op)
	}
	return nil
}

// putArtifactHead replaces a stored artifact's body and rev, keeping its
// pending appends and their length (store.PutArtifactHeads).
func putArtifactHead(ctx context.Context, ex execer, id string, a store.Artifact) error {
	res, err := ex.ExecContext(ctx, qPutHeadRev, a.Rev, id, a.Seq)
	if err != nil {
		return fmt.Errorf("put artifact head session=%s seq=%d: %w", id, a.Seq, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("put artifact head session=%s seq=%d: artifact not stored (%d rows, %v)", id, a.Seq, n, err)
	}
	if _, err := ex.ExecContext(ctx, qPutHeadBody, string(a.Body), id, a.Seq); err != nil {
		return fmt.Errorf("put artifact head session=%s seq=%d: body: %w", id, a.Seq, err)
	}
	return nil
}

// appendArtifact stores one commit's appends to an artifact as rows after
// its pending ones and moves the artifact's rev.
func appendArtifact(ctx context.Context, ex execer, id string, a store.ArtifactAppend) error {
	var bytes int64
	for _, f := range a.Fields {
		bytes += int64(len(f.Text))
	}
	res, err := ex.ExecContext(ctx, qAppendRev, a.Rev, bytes, id, a.Seq)
	if err != nil {
		return fmt.Errorf("append to artifact session=%s seq=%d: %w", id, a.Seq, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("append to artifact session=%s seq=%d: artifact not stored (%d rows, %v)", id, a.Seq, n, err)
	}
	for _, f := range a.Fields {
		_, err := ex.ExecContext(ctx, qAppendText,
			id, a.Seq, f.Field, f.Text)
		if err != nil {
			return fmt.Errorf("append to artifact session=%s seq=%d field=%s: %w", id, a.Seq, f.Field, err)
		}
	}
	return nil
}
