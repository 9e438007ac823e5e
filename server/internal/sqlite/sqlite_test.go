package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/store"
)

func openFile(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newSession(id string) protocol.Session {
	return protocol.Session{ID: id, Status: protocol.StatusBootstrapping, CreatedAt: 1000}
}

func commit(t testing.TB, s *Store, ops ...store.Op) {
	t.Helper()
	if err := s.Commit(context.Background(), ops); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func TestMigrationsAreAppliedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rein.db")
	s := openFile(t, path)
	newest := newestMigration(t)
	v, err := s.SchemaVersion(context.Background())
	if err != nil || v != newest {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, newest)
	}
	commit(t, s, store.CreateSession{Session: newSession("a")})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening must not re-run 0001 (it would fail on existing tables).
	s2 := openFile(t, path)
	if v, err := s2.SchemaVersion(context.Background()); err != nil || v != newest {
		t.Fatalf("after reopen SchemaVersion = %d, %v; want %d", v, err, newest)
	}
	if _, err := s2.Session(context.Background(), "a"); err != nil {
		t.Fatalf("session lost across reopen: %v", err)
	}
}

func TestCommitIsAtomic(t *testing.T) {
	s := openFile(t, filepath.Join(t.TempDir(), "rein.db"))
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: newSession("a")})
	// The second op breaks the primary key: the first must not stay.
	err := s.Commit(ctx, []store.Op{
		store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: 1, Body: []byte(`{"type":"notice"}`)}}},
		store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: 1, Body: []byte(`{"type":"notice"}`)}}},
	})
	if err == nil {
		t.Fatal("Commit with a duplicate position succeeded")
	}
	evs, err := s.Events(ctx, "a")
	if err != nil || len(evs) != 0 {
		t.Fatalf("Events after failed commit = %d, %v; want none", len(evs), err)
	}
	// A foreign key violation rolls back too.
	err = s.Commit(ctx, []store.Op{
		store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{{Seq: 1, Rev: 1, Body: []byte(`{}`)}}},
		store.AddCommand{SessionID: "missing", Command: store.Command{ID: 1, Body: []byte(`{}`)}},
	})
	if err == nil {
		t.Fatal("Commit with a command for a missing session succeeded")
	}
	arts, err := s.Artifacts(ctx, "a")
	if err != nil || len(arts) != 0 {
		t.Fatalf("Artifacts after failed commit = %d, %v; want none", len(arts), err)
	}
}

func TestDeleteCascades(t *testing.T) {
	s := openFile(t, filepath.Join(t.TempDir(), "rein.db"))
	ctx := context.Background()
	commit(t, s,
		store.CreateSession{Session: newSession("a")},
		store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: 1, Instance: "i", AgentSeq: 1, Body: []byte(`{}`)}}},
		store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{{Seq: 1, Rev: 1, Body: []byte(`{}`)}}},
		store.AddCommand{SessionID: "a", Command: store.Command{ID: 1, Body: []byte(`{}`)}},
		store.AddInstance{SessionID: "a", Instance: "i", At: 1},
	)
	commit(t, s, store.DeleteSession{ID: "a"})
	for _, table := range []string{"sessions", "events", "artifacts", "commands", "sandbox_instances"} {
		var n int
		if err := s.r.Get(&n, "SELECT COUNT(*) FROM "+table); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s has %d rows after delete; want 0", table, n)
		}
	}
	if _, err := s.Session(ctx, "a"); protocol.CodeOf(err) != protocol.CodeNotFound {
		t.Fatalf("Session after delete: %v; want not_found", err)
	}
}

func TestReloadAfterReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rein.db")
	s := openFile(t, path)
	p := "proj"
	sess := newSession("a")
	sess.Project = &p
	commit(t, s, store.CreateSession{Session: sess}, store.CreateSession{Session: newSession("b")})
	sum, hb := "sum", int64(77)
	up := store.Session{Session: sess, Rev: 3, LastCommandID: 2, CurrentInstance: "i2"}
	up.Status, up.Summary, up.LastHeartbeat = protocol.StatusLive, &sum, &hb
	commit(t, s,
		store.UpdateSession{Session: up},
		store.AddInstance{SessionID: "a", Instance: "i1", At: 1},
		store.AddInstance{SessionID: "a", Instance: "i2", At: 2},
		store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: 1, Instance: "i1", AgentSeq: 4, Body: []byte(`{"type":"notice"}`)}}},
		store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{{Seq: 1, Rev: 2, Body: []byte(`{"seq":1}`)}, {Seq: 2, Rev: 3, Body: []byte(`{"seq":2}`)}}},
		store.AddCommand{SessionID: "a", Command: store.Command{ID: 1, Body: []byte(`{"id":1}`)}},
		store.AddCommand{SessionID: "a", Command: store.Command{ID: 2, Body: []byte(`{"id":2}`)}},
	)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openFile(t, path)
	ctx := context.Background()
	all, err := s.LoadSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].ID != "a" || all[1].ID != "b" {
		t.Fatalf("LoadSessions = %+v; want a, b", all)
	}
	a := all[0]
	if a.Status != protocol.StatusLive || *a.Summary != "sum" || *a.LastHeartbeat != 77 || *a.Project != "proj" ||
		a.Rev != 3 || a.LastCommandID != 2 || a.CurrentInstance != "i2" || fmt.Sprint(a.Instances) != "[i1 i2]" {
		t.Fatalf("reloaded session = %+v", a)
	}
	snap, err := s.ArtifactsSince(ctx, "a", 2)
	if err != nil || snap.Rev != 3 || len(snap.Artifacts) != 1 || snap.Artifacts[0].Seq != 2 {
		t.Fatalf("ArtifactsSince(2) = %+v, %v", snap, err)
	}
	cmds, err := s.Commands(ctx, "a", 1, 2)
	if err != nil || len(cmds) != 1 || string(cmds[0].Body) != `{"id":2}` {
		t.Fatalf("Commands(1,2) = %+v, %v", cmds, err)
	}
	evs, err := s.Events(ctx, "a")
	if err != nil || len(evs) != 1 || evs[0].AgentSeq != 4 || evs[0].Instance != "i1" {
		t.Fatalf("Events = %+v, %v", evs, err)
	}
	list, err := s.Sessions(ctx, "proj")
	if err != nil || len(list) != 1 || list[0].ID != "a" {
		t.Fatalf("Sessions(proj) = %+v, %v", list, err)
	}
}

// In-memory mode must be one database for every reader and the writer.
func TestMemoryIsOneDatabase(t *testing.T) {
	s := openFile(t, Memory)
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: newSession("a")})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := s.Session(ctx, "a"); err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			if err := s.Commit(ctx, []store.Op{store.CreateSession{Session: newSession(fmt.Sprint("s", i))}}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := s.Sessions(ctx, "")
	if err != nil || len(list) != 9 {
		t.Fatalf("Sessions = %d, %v; want 9", len(list), err)
	}
}

func TestNotFound(t *testing.T) {
	s := openFile(t, filepath.Join(t.TempDir(), "rein.db"))
	ctx := context.Background()
	_, err1 := s.Session(ctx, "x")
	_, err2 := s.Artifacts(ctx, "x")
	_, err3 := s.ArtifactsSince(ctx, "x", 0)
	for _, err := range []error{err1, err2, err3} {
		if !errors.Is(err, protocol.ErrNotFound) {
			t.Errorf("err = %v; want not_found", err)
		}
	}
}
