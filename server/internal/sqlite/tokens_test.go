package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/rein-ai/rein/server/store"
)

// newestMigration is the highest migration number embedded, so tests do not
// change each time a migration is added.
func newestMigration(t testing.TB) int {
	t.Helper()
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	newest := 0
	for _, n := range names {
		v, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(n, "migrations/"), "_", 2)[0])
		if err != nil {
			t.Fatalf("migration %s: %v", n, err)
		}
		newest = max(newest, v)
	}
	return newest
}

func TestSandboxTokens(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rein.db")
	s := openFile(t, path)
	h1, h2, h3 := sha256.Sum256([]byte("one")), sha256.Sum256([]byte("two")), sha256.Sum256([]byte("three"))
	commit(t, s,
		store.CreateSession{Session: newSession("a")},
		store.CreateSession{Session: newSession("b")},
		store.CreateSession{Session: newSession("old")}, // no token: made before tokens existed
		store.SetSandboxToken{SessionID: "a", Hash: h1, At: 1},
		store.SetSandboxToken{SessionID: "b", Hash: h2, At: 1},
	)
	// Rotation replaces the hash.
	commit(t, s, store.SetSandboxToken{SessionID: "a", Hash: h3, At: 2})
	got, err := s.SandboxTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["a"] != h3 || got["b"] != h2 {
		t.Fatalf("SandboxTokens = %x", got)
	}
	// A hash names one session only.
	if err := s.Commit(ctx, []store.Op{store.SetSandboxToken{SessionID: "old", Hash: h2, At: 3}}); err == nil {
		t.Fatal("the same hash stored for two sessions")
	}
	// Deleting a session deletes its token.
	commit(t, s, store.DeleteSession{ID: "a"})
	if got, _ := s.SandboxTokens(ctx); len(got) != 1 {
		t.Fatalf("after delete SandboxTokens = %x", got)
	}
	// A token for a session that does not exist is refused (foreign key).
	if err := s.Commit(ctx, []store.Op{store.SetSandboxToken{SessionID: "nope", Hash: h1, At: 3}}); err == nil {
		t.Fatal("token stored for a missing session")
	}
	// The token table holds hashes only: no column could hold a token.
	var cols []string
	if err := s.r.SelectContext(ctx, &cols, `SELECT name FROM pragma_table_info('sandbox_tokens')`); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cols, ",") != "session_id,hash,created_at" {
		t.Fatalf("sandbox_tokens columns %v", cols)
	}
}

// A migration missing from schema_version runs even when a newer one is
// recorded: migrations are numbered when written, not when merged.
func TestMigrationsFillGaps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rein.db")
	if err := openFile(t, path).Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	// As a build that had every migration but 0003 would have left it.
	for _, q := range []string{
		`DROP TABLE sandbox_tokens`,
		`DELETE FROM schema_version WHERE version = 3`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s := openFile(t, path)
	if _, err := s.SandboxTokens(context.Background()); err != nil {
		t.Fatalf("0003 was skipped: %v", err)
	}
	commit(t, s, store.CreateSession{Session: newSession("a")})
}

// A database a build of the command-acknowledgement branch migrated,
// which numbered its migration 0005 (the merge made it 0006, 0005 being
// the turn digests), opens: its acknowledged command is kept and the
// turn digests' table is made. The server refused to start on it (0006:
// a duplicate column).
func TestCommandAcksNumberedFive(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rein.db")
	db := migratedBefore(t, path, 5)
	for _, q := range []string{
		// That build's 0005_command_acks.sql.
		`ALTER TABLE sessions ADD COLUMN acked_command_id INTEGER NOT NULL DEFAULT 0`,
		`INSERT INTO schema_version (version) VALUES (5)`,
		`INSERT INTO sessions (id, status, created_at, last_command_id, acked_command_id) VALUES ('a', 'idle', 1, 3, 2)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s := openFile(t, path)
	rec, err := s.Session(ctx, "a")
	if err != nil || rec.AckedCommandID != 2 || rec.PendingCommands != 1 {
		t.Fatalf("the session after the migration: %+v, %v; want command 2 acknowledged, 1 pending", rec, err)
	}
	var versions []int
	if err := s.r.SelectContext(ctx, &versions, `SELECT version FROM schema_version ORDER BY version`); err != nil {
		t.Fatal(err)
	}
	if len(versions) != newestMigration(t) || versions[4] != 5 || versions[5] != 6 {
		t.Fatalf("schema versions %v; want 1 to %d", versions, newestMigration(t))
	}
	if _, err := s.r.ExecContext(ctx, `SELECT turn_id FROM turn_digests`); err != nil {
		t.Fatalf("no turn digests table: %v", err)
	}
}

// A database file a newer rein-server migrated (a schema version this
// build has no migration for) is refused at open, naming the version,
// and left as it was: this build would not know what that one stores
// (staged events, idempotency keys, a column every write must bump).
func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rein.db")
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s, store.CreateSession{Session: newSession("a")})
	newest, err := s.SchemaVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_version (version) VALUES (?)`, newest+1); err != nil {
		t.Fatal(err)
	}
	db.Close()

	if s, err := Open(context.Background(), path, Options{}); err == nil {
		s.Close()
		t.Fatalf("a database at schema version %d opened with a build whose newest is %d", newest+1, newest)
	} else if want := strconv.Itoa(newest + 1); !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v; want it to say a newer build migrated it, naming version %s", err, want)
	}
	// The refusal wrote nothing and released the lock: remove the
	// newer version and the same file opens with its session.
	db, err = sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM schema_version WHERE version = ?`, newest+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = openFile(t, path)
	if _, err := s.Session(context.Background(), "a"); err != nil {
		t.Fatalf("the session after the refusal: %v", err)
	}
}
