package postgres

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/rein-ai/rein/protocol"

	"github.com/rein-ai/rein/server/pgtest"
	"github.com/rein-ai/rein/server/store"
	"github.com/rein-ai/rein/server/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func open(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// The PostgreSQL store passes the store contract.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, pgtest.NewDatabase(t)) })
}

func TestMore(t *testing.T) {
	runMore(t, func(t *testing.T) Opener {
		dsn := pgtest.NewDatabase(t)
		return func(t *testing.T) store.Store { return open(t, dsn) }
	})
}

// Replicas starting at once against an empty database all migrate it
// without error: the advisory lock makes them wait for the first.
func TestConcurrentMigrations(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := Open(context.Background(), dsn, nil)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, dsn)
	files, _ := filepath.Glob("migrations/*.sql")
	if v, err := s.SchemaVersion(context.Background()); err != nil || v != len(files) {
		t.Fatalf("SchemaVersion = %d, %v; want %d (every migration, applied once)", v, err, len(files))
	}
}

// A database a newer rein-server migrated (a schema version this build
// has no migration for) is refused at open, naming the version: a replica
// of an older build would not keep what the newer ones rely on.
func TestNewerSchemaRefused(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	ctx := context.Background()
	newest, err := s.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO schema_version (version) VALUES ($1)`, newest+1); err != nil {
		t.Fatal(err)
	}
	if s2, err := Open(ctx, dsn, nil); err == nil {
		s2.Close()
		t.Fatalf("a database at schema version %d opened with a build whose newest is %d", newest+1, newest)
	} else if !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), strconv.Itoa(newest+1)) {
		t.Fatalf("err = %v; want it to say a newer build migrated it, naming version %d", err, newest+1)
	}
}

// Every connection acknowledges only what is flushed, bounds lock waits,
// and has its backend notice a replica that vanished (keepalives; the
// test clusters listen on loopback TCP, where they apply).
func TestConnectionSettings(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t))
	ctx := context.Background()
	for name, want := range map[string]string{"synchronous_commit": "on", "lock_timeout": "5s",
		"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"} {
		var got string
		if err := s.pool.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %s; want %s", name, got, want)
		}
	}
	// A deleted session's rows are all gone (the contract checks reads;
	// this checks the tables, appends included).
	commitOps(t, s,
		store.CreateSession{Session: sessionRec("a")},
		store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{{Seq: 1, Rev: 1, Body: []byte(`{"output":""}`)}}},
		store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 2, Fields: []store.FieldAppend{{Field: "output", Text: "x"}}}}},
		store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: 1, Body: []byte(`{}`)}}},
		store.AddInstance{SessionID: "a", Instance: "i", At: 1},
	)
	commitOps(t, s, store.DeleteSession{ID: "a"})
	for _, table := range []string{"sessions", "events", "artifacts", "artifact_appends", "commands", "sandbox_instances", "sandbox_tokens"} {
		var n int
		if err := s.pool.QueryRow(ctx, "SELECT COUNT(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s has %d rows after delete", table, n)
		}
	}
}

func sessionRec(id string) protocol.Session {
	return protocol.Session{ID: id, Status: protocol.StatusBootstrapping, CreatedAt: 1}
}

func commitOps(t *testing.T, s *Store, ops ...store.Op) {
	t.Helper()
	if err := s.Commit(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
}

// Migration 0010: the columns that hold big values compress them with
// lz4, where the server has it; a big value stored since reads back and
// is stored compressed with lz4.
func TestBigValuesCompressWithLZ4(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var version int
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version < 140000 {
		t.Skipf("PostgreSQL %d has no lz4 compression", version)
	}
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE lz4_probe (x text COMPRESSION lz4)`); err != nil {
		t.Skipf("this PostgreSQL has no lz4: %v", err)
	}
	for _, col := range [][2]string{{"events", "body"}, {"artifacts", "body"}, {"artifact_appends", "text"}, {"artifact_appends", "raw"}, {"change_batches", "body"}} {
		var method string
		if err := conn.QueryRow(ctx, `SELECT attcompression::text FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2`, col[0], col[1]).Scan(&method); err != nil {
			t.Fatal(err)
		}
		if method != "l" {
			t.Errorf("%s.%s compresses with %q; want l (lz4)", col[0], col[1], method)
		}
	}
	// A body of 100 KB that compresses: stored out of line, with lz4.
	body := []byte(`{"type":"tool_output_delta","id":"t1","delta":"` + strings.Repeat("line of output\\n", 7000) + `"}`)
	if err := s.Commit(ctx, []store.Op{
		store.CreateSession{Session: protocol.Session{ID: "a", Status: protocol.StatusLive, CreatedAt: 1}},
		store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: 1, Instance: "i", AgentSeq: 1, Body: body}}},
	}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(ctx, "a")
	if err != nil || len(evs) != 1 || string(evs[0].Body) != string(body) {
		t.Fatalf("Events = %d, %v; want the body back", len(evs), err)
	}
	var method *string
	if err := conn.QueryRow(ctx, `SELECT pg_column_compression(body) FROM events WHERE session_id = 'a'`).Scan(&method); err != nil {
		t.Fatal(err)
	}
	if method == nil || *method != "lz4" {
		t.Errorf("the stored body is compressed with %v; want lz4", method)
	}
}

// Migration 0011: an append whose text holds NUL is stored in raw, text
// NULL, and reads back merged; a row as the version before writes it
// (text only) reads back beside it; the version before's read of such an
// artifact fails rather than leaving the NUL appends out; a row with
// neither or both is refused.
func TestAppendsHoldingNULInRaw(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	s := open(t, dsn)
	body := []byte(`{"createdAt":1,"fields":{"output":"","status":"running"},"id":"x","rev":1,"seq":1,"turnId":"t1","type":"tool_call"}`)
	commitOps(t, s, store.CreateSession{Session: sessionRec("a")},
		store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{{Seq: 1, Rev: 1, Body: body}}})
	appends := []store.FieldAppend{{Field: "output", Text: "\x7fELF\x02\x00"}, {Field: "output", Text: "plain"}}
	commitOps(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 2, Fields: appends}}})
	// The version before appends as it did, in text.
	if _, err := s.pool.Exec(ctx, `INSERT INTO artifact_appends (session_id, seq, n, field, text) VALUES ('a', 1, 3, 'output', 'old')`); err != nil {
		t.Fatalf("an append as the version before writes it: %v", err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE artifacts SET appended = appended + 3, rev = 3 WHERE session_id = 'a'`); err != nil {
		t.Fatal(err)
	}
	var texts, raws int
	if err := s.pool.QueryRow(ctx, `SELECT COUNT(text), COUNT(raw) FROM artifact_appends WHERE session_id = 'a'`).Scan(&texts, &raws); err != nil {
		t.Fatal(err)
	}
	if texts != 2 || raws != 1 {
		t.Errorf("%d appends in text and %d in raw; want 2 and the NUL one", texts, raws)
	}
	want, err := store.MergeAppends(body, 3, append(appends, store.FieldAppend{Field: "output", Text: "old"}))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Artifacts(ctx, "a")
	if err != nil || len(got) != 1 || string(got[0].Body) != string(want) {
		t.Fatalf("Artifacts = %v, %v\nwant %s", got, err, want)
	}

	// The version before read appends so; the NUL one makes it fail.
	rows, _ := s.pool.Query(ctx, `SELECT seq, field, text FROM artifact_appends WHERE session_id = 'a' ORDER BY seq, n`)
	var (
		seq         int64
		field, text string
	)
	if _, err := pgx.ForEachRow(rows, []any{&seq, &field, &text}, func() error { return nil }); err == nil {
		t.Error("the version before's read of the appends succeeded without the one in raw")
	}

	for name, q := range map[string]string{
		"neither": `INSERT INTO artifact_appends (session_id, seq, n, field) VALUES ('a', 1, 10, 'output')`,
		"both":    `INSERT INTO artifact_appends (session_id, seq, n, field, text, raw) VALUES ('a', 1, 11, 'output', 'x', 'x')`,
	} {
		if _, err := s.pool.Exec(ctx, q); err == nil {
			t.Errorf("a row with %s text and raw was stored", name)
		}
	}
}
