package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/rein-ai/rein/server/store"
)

// A database written by a build with only 0001 keeps its artifacts when
// 0002 moves their bodies to their own table.
func TestMigrateArtifactBodies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rein.db")
	old, err := sqlx.Open("sqlite", "file:"+path+"?"+pragmas)
	if err != nil {
		t.Fatal(err)
	}
	first, err := migrations.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	body := `{"createdAt":1,"id":"x","output":"old","rev":2,"seq":1,"type":"tool_call"}`
	for _, q := range []string{
		string(first),
		`CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL DEFAULT (unixepoch()))`,
		`INSERT INTO schema_version (version) VALUES (1)`,
		`INSERT INTO sessions (id, status, created_at, rev) VALUES ('a', 'idle', 1, 2)`,
		`INSERT INTO artifacts (session_id, seq, rev, body) VALUES ('a', 1, 2, '` + body + `')`,
	} {
		if _, err := old.Exec(q); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s := openFile(t, path)
	arts, err := s.Artifacts(context.Background(), "a")
	if err != nil || len(arts) != 1 || string(arts[0].Body) != body || arts[0].Rev != 2 {
		t.Fatalf("after migrating: %+v, %v; want %s", arts, err, body)
	}
	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 3, Fields: []store.FieldAppend{{Field: "output", Text: "+new"}}}}})
	want := `{"createdAt":1,"id":"x","output":"old+new","rev":3,"seq":1,"type":"tool_call"}`
	if arts, err := s.Artifacts(context.Background(), "a"); err != nil || string(arts[0].Body) != want {
		t.Fatalf("append after migrating: %+v, %v; want %s", arts, err, want)
	}
}

// Appends are merged into reads in order and only for the artifacts that
// have them; a full write drops them; an append to an artifact never
// stored fails the commit; delete cascades.
func TestArtifactAppends(t *testing.T) {
	s := openFile(t, filepath.Join(t.TempDir(), "rein.db"))
	ctx := context.Background()
	plain := []byte(`{"createdAt":1,"id":"p","rev":1,"seq":1,"type":"notice"}`)
	commit(t, s,
		store.CreateSession{Session: newSession("a")},
		store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{
			{Seq: 1, Rev: 1, Body: plain},
			{Seq: 2, Rev: 2, Body: []byte(`{"createdAt":1,"id":"x","rev":2,"seq":2,"status":"running","type":"tool_call"}`)},
		}},
	)
	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{
		{Seq: 2, Rev: 4, Fields: []store.FieldAppend{{Field: "output", Text: "a<"}, {Field: "inputText", Text: "{"}}},
	}})
	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{
		{Seq: 2, Rev: 5, Fields: []store.FieldAppend{{Field: "output", Text: "b\n"}}},
	}})
	grown := `{"createdAt":1,"id":"x","inputText":"{","output":"a\u003cb\n","rev":5,"seq":2,"status":"running","type":"tool_call"}`
	arts, err := s.Artifacts(ctx, "a")
	if err != nil || len(arts) != 2 || string(arts[0].Body) != string(plain) || string(arts[1].Body) != grown || arts[1].Rev != 5 {
		t.Fatalf("Artifacts = %+v, %v; want the notice as stored and %s", arts, err, grown)
	}
	snap, err := s.ArtifactsSince(ctx, "a", 1)
	if err != nil || len(snap.Artifacts) != 1 || string(snap.Artifacts[0].Body) != grown {
		t.Fatalf("ArtifactsSince(1) = %+v, %v; want %s", snap, err, grown)
	}

	// An append to an artifact that was never stored is a bug: the commit
	// fails and leaves nothing behind.
	err = s.Commit(ctx, []store.Op{
		store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 2, Rev: 6, Fields: []store.FieldAppend{{Field: "output", Text: "c"}}}}},
		store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 9, Rev: 7, Fields: []store.FieldAppend{{Field: "output", Text: "?"}}}}},
	})
	if err == nil {
		t.Fatal("append to a missing artifact succeeded")
	}
	if arts, _ := s.Artifacts(ctx, "a"); string(arts[1].Body) != grown {
		t.Fatalf("after a failed commit: %s; want %s", arts[1].Body, grown)
	}

	full := []byte(`{"createdAt":1,"id":"x","output":"done","rev":8,"seq":2,"status":"completed","type":"tool_call"}`)
	commit(t, s, store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{{Seq: 2, Rev: 8, Body: full}}})
	if arts, _ := s.Artifacts(ctx, "a"); string(arts[1].Body) != string(full) {
		t.Fatalf("after a full write: %s; want %s", arts[1].Body, full)
	}
	if n := countRows(t, s, `SELECT COUNT(*) FROM artifact_appends`); n != 0 {
		t.Fatalf("%d append rows after a full write; want 0", n)
	}

	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 2, Rev: 9, Fields: []store.FieldAppend{{Field: "output", Text: "!"}}}}})
	commit(t, s, store.DeleteSession{ID: "a"})
	if n := countRows(t, s, `SELECT COUNT(*) FROM artifact_appends`); n != 0 {
		t.Fatalf("%d append rows after delete; want 0", n)
	}
}

func countRows(t testing.TB, s *Store, q string) int {
	t.Helper()
	var n int
	if err := s.r.Get(&n, q); err != nil {
		t.Fatal(err)
	}
	return n
}
