package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/store"
)

// Staged events outlive the process that staged them (the server settles
// them at its next start): after a reopen they are still staged, read as
// part of the log, and their positions are still refused.
func TestStagedAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rein.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(pos int64) store.Event {
		return store.Event{Pos: pos, Instance: "i", AgentSeq: pos, Body: []byte(`{"type":"text_delta","delta":"x"}`)}
	}
	ops := []store.Op{
		store.CreateSession{Session: protocol.Session{ID: "a", Status: protocol.StatusLive, CreatedAt: 1}},
		store.AppendEvents{SessionID: "a", Events: []store.Event{ev(1), ev(2)}},
	}
	if err := s.Commit(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, []store.Op{store.AppendEvents{SessionID: "a", Events: []store.Event{ev(3)}, Stage: true}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(ctx, path, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ids, err := s.StagedSessions(ctx); err != nil || len(ids) != 1 || ids[0] != "a" {
		t.Fatalf("StagedSessions after reopen = %v, %v; want [a]", ids, err)
	}
	if log, err := s.Events(ctx, "a"); err != nil || len(log) != 3 || log[2].Pos != 3 {
		t.Fatalf("Events after reopen = %+v, %v; want positions 1-3", log, err)
	}
	if err := s.Commit(ctx, []store.Op{store.AppendEvents{SessionID: "a", Events: []store.Event{ev(3)}, Stage: true}}); err == nil {
		t.Fatal("a staged position was accepted again after a reopen")
	}
	if err := s.Commit(ctx, []store.Op{store.AppendEvents{SessionID: "a", Events: []store.Event{ev(4)}}, store.Unstage{}}); err != nil {
		t.Fatal(err)
	}
	if log, err := s.Events(ctx, "a"); err != nil || len(log) != 4 {
		t.Fatalf("Events after the move = %d entries, %v; want 4", len(log), err)
	}
	var staged int
	if err := s.r.GetContext(ctx, &staged, `SELECT COUNT(*) FROM staged_events`); err != nil || staged != 0 {
		t.Fatalf("staged rows after Unstage = %d, %v", staged, err)
	}
}

// A database with rows staged by a build before migration 0009 (when
// staged_events had a foreign key) keeps them through the migration, in
// order, and they move into the log as before.
func TestStagedRowsSurviveMigration9(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	old := migratedBefore(t, path, 9)
	for _, q := range []string{
		`INSERT INTO sessions (id, status, created_at) VALUES ('a', 'live', 1)`,
		`INSERT INTO events (session_id, pos, instance, agent_seq, body) VALUES ('a', 1, 'i', 1, '{"n":1}')`,
		`INSERT INTO staged_events (session_id, pos, instance, agent_seq, body) VALUES ('a', 2, 'i', 2, '{"n":2}'), ('a', 3, 'i', 3, '{"n":3}')`,
	} {
		if _, err := old.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s := openFile(t, path)
	if ids, err := s.StagedSessions(ctx); err != nil || len(ids) != 1 || ids[0] != "a" {
		t.Fatalf("StagedSessions after the migration = %v, %v; want [a]", ids, err)
	}
	check := func(when string) {
		t.Helper()
		log, err := s.Events(ctx, "a")
		if err != nil || len(log) != 3 {
			t.Fatalf("%s: Events = %d entries, %v; want 3", when, len(log), err)
		}
		for i, e := range log {
			if e.Pos != int64(i+1) || string(e.Body) != fmt.Sprintf(`{"n":%d}`, i+1) {
				t.Fatalf("%s: Events[%d] = %+v", when, i, e)
			}
		}
	}
	check("after the migration")
	if err := s.Commit(ctx, []store.Op{store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: 3, Instance: "i", AgentSeq: 3, Body: []byte(`{}`)}}, Stage: true}}); err == nil {
		t.Fatal("a position staged before the migration was accepted again")
	}
	if err := s.Commit(ctx, []store.Op{store.Unstage{}}); err != nil {
		t.Fatal(err)
	}
	check("after Unstage")
}

// migratedBefore makes a database at path as a build whose last
// migration came before version did, and returns it open; the test adds
// that build's rows, closes it and opens it with the Store.
func migratedBefore(t *testing.T, path string, version int) *sqlx.DB {
	t.Helper()
	old, err := sqlx.Open("sqlite", "file:"+path+"?"+pragmas)
	if err != nil {
		t.Fatal(err)
	}
	all, err := store.PendingMigrations(migrations, "migrations", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(`CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL DEFAULT (unixepoch()))`); err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		if m.Version >= version {
			break
		}
		if _, err := old.Exec(m.SQL); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if _, err := old.Exec(`INSERT INTO schema_version (version) VALUES (?)`, m.Version); err != nil {
			t.Fatal(err)
		}
	}
	return old
}

// One commit's event rows are inserted in statements of several rows,
// those of a run of one session and instance binding the two once: every
// row lands whole, in the log or staged, whatever the mix of sessions,
// instances and run lengths (here runs of 70, 5 and 3 rows, cut into
// statements of 64, 16, 4 and 1).
func TestEventInsertsOfMixedRuns(t *testing.T) {
	for _, stage := range []bool{false, true} {
		t.Run(fmt.Sprintf("stage=%v", stage), func(t *testing.T) {
			s := openFile(t, filepath.Join(t.TempDir(), "rein.db"))
			commit(t, s, store.CreateSession{Session: newSession("a")}, store.CreateSession{Session: newSession("b")})
			want := map[string][]store.Event{}
			next := map[string]int64{}
			add := func(session, instance string, n int) store.Op {
				evs := make([]store.Event, n)
				for i := range evs {
					next[session]++
					p := next[session]
					evs[i] = store.Event{Pos: p, Instance: instance, AgentSeq: p * 10, Body: fmt.Appendf(nil, `{"type":"text_delta","delta":"%s%d"}`, session, p)}
				}
				want[session] = append(want[session], evs...)
				return store.AppendEvents{SessionID: session, Events: evs, Stage: stage}
			}
			commit(t, s, add("a", "i1", 70), add("b", "i1", 3), add("a", "i2", 5), add("b", "i2", 16), add("a", "i2", 1))
			for _, id := range []string{"a", "b"} {
				got, err := s.Events(context.Background(), id)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want[id]) {
					t.Fatalf("session %s: %d events, want %d", id, len(got), len(want[id]))
				}
				for i, w := range want[id] {
					if g := got[i]; g.Pos != w.Pos || g.Instance != w.Instance || g.AgentSeq != w.AgentSeq || string(g.Body) != string(w.Body) {
						t.Fatalf("session %s event %d = %+v (%s), want %+v (%s)", id, i, g, g.Body, w, w.Body)
					}
				}
			}
		})
	}
}
