package postgres

// Checks beyond the shared contract (store/storetest): reopening the same
// database, event bodies kept byte for byte, snapshots consistent while
// commits run. They are written against store.Store only.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/rein-ai/rein/server/pgtest"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/store"
)

// Opener opens the test's database; each call opens it again (the same
// data), so a test can close a store and reopen it, or hold two at once.
type Opener func(t *testing.T) store.Store

// runMore runs the checks; newDB makes a fresh, empty database for one
// test and returns how to open it.
func runMore(t *testing.T, newDB func(t *testing.T) Opener) {
	tests := []struct {
		name string
		f    func(t *testing.T, open Opener)
	}{
		{"DeleteCascades", testDeleteCascades},
		{"ReloadAfterReopen", testReloadAfterReopen},
		{"EventsKeepBytes", testEventsKeepBytes},
		{"ConcurrentReadsAndCommits", testConcurrent},
		{"SnapshotMatchesRev", testSnapshotMatchesRev},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.f(t, newDB(t)) })
	}
}

func newSession(id string) protocol.Session {
	return protocol.Session{ID: id, Status: protocol.StatusBootstrapping, CreatedAt: 1000}
}

func commit(t *testing.T, s store.Store, ops ...store.Op) {
	t.Helper()
	if err := s.Commit(context.Background(), ops); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func testDeleteCascades(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	h := sha256.Sum256([]byte("tok"))
	commit(t, s,
		store.CreateSession{Session: newSession("a")},
		store.CreateSession{Session: newSession("b")},
		store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: 1, Instance: "i", AgentSeq: 1, Body: []byte(`{}`)}}},
		store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{{Seq: 1, Rev: 1, Body: []byte(`{"output":""}`)}}},
		store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 2, Fields: []store.FieldAppend{{Field: "output", Text: "x"}}}}},
		store.AddCommand{SessionID: "a", Command: store.Command{ID: 1, Body: []byte(`{}`)}},
		store.AddInstance{SessionID: "a", Instance: "i", At: 1},
		store.SetSandboxToken{SessionID: "a", Hash: h, At: 1},
	)
	commit(t, s, store.DeleteSession{ID: "a"})
	if _, err := s.Session(ctx, "a"); !errors.Is(err, protocol.ErrNotFound) {
		t.Fatalf("Session after delete: %v; want not_found", err)
	}
	// A session made again under the same id starts empty: nothing of
	// the deleted one survived.
	commit(t, s, store.CreateSession{Session: newSession("a")})
	evs, err := s.Events(ctx, "a")
	if err != nil || len(evs) != 0 {
		t.Fatalf("Events of the new namesake = %+v, %v", evs, err)
	}
	arts, err := s.Artifacts(ctx, "a")
	if err != nil || len(arts) != 0 {
		t.Fatalf("Artifacts of the new namesake = %+v, %v", arts, err)
	}
	cmds, err := s.Commands(ctx, "a", 0, 10)
	if err != nil || len(cmds) != 0 {
		t.Fatalf("Commands of the new namesake = %+v, %v", cmds, err)
	}
	all, err := s.LoadSessions(ctx)
	if err != nil || len(all) != 2 || all[1].ID != "a" || len(all[1].Instances) != 0 {
		t.Fatalf("LoadSessions = %+v, %v", all, err)
	}
	if toks, err := s.SandboxTokens(ctx); err != nil || len(toks) != 0 {
		t.Fatalf("SandboxTokens after delete = %x, %v", toks, err)
	}
	// The hash of the deleted session's token is free again.
	commit(t, s, store.SetSandboxToken{SessionID: "b", Hash: h, At: 2})
}

func testReloadAfterReopen(t *testing.T, open Opener) {
	s := open(t)
	p := "proj"
	sess := newSession("a")
	sess.Project = &p
	later := newSession("b")
	commit(t, s, store.CreateSession{Session: sess}, store.CreateSession{Session: later})
	sum, hb := "sum", int64(77)
	up := store.Session{Session: sess, Rev: 3, LastCommandID: 2, CurrentInstance: "i2"}
	up.Status, up.Summary, up.LastHeartbeat = protocol.StatusLive, &sum, &hb
	commit(t, s,
		store.UpdateSession{Session: up},
		store.AddInstance{SessionID: "a", Instance: "i1", At: 1},
		store.AddInstance{SessionID: "a", Instance: "i2", At: 2},
		store.AddInstance{SessionID: "a", Instance: "i1", At: 3}, // again: kept once, first seen at 1
		store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: 1, Instance: "i1", AgentSeq: 4, Body: []byte(`{"type":"notice"}`)}}},
		store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{{Seq: 1, Rev: 2, Body: []byte(`{"seq":1}`)}, {Seq: 2, Rev: 3, Body: []byte(`{"seq":2}`)}}},
		store.AddCommand{SessionID: "a", Command: store.Command{ID: 1, Body: []byte(`{"id":1}`), CreatedAt: 5}},
		store.AddCommand{SessionID: "a", Command: store.Command{ID: 2, Body: []byte(`{"id":2}`), CreatedAt: 6}},
	)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening migrates again: every migration must be applied once only.
	s = open(t)
	ctx := context.Background()
	all, err := s.LoadSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].ID != "a" || all[1].ID != "b" {
		t.Fatalf("LoadSessions = %+v; want a, b", all)
	}
	a := all[0]
	if a.Status != protocol.StatusLive || a.Summary == nil || *a.Summary != "sum" || a.LastHeartbeat == nil || *a.LastHeartbeat != 77 ||
		a.Project == nil || *a.Project != "proj" || a.CreatedAt != 1000 ||
		a.Rev != 3 || a.LastCommandID != 2 || a.CurrentInstance != "i2" || fmt.Sprint(a.Instances) != "[i1 i2]" {
		t.Fatalf("reloaded session = %+v", a)
	}
	if b := all[1]; b.Summary != nil || b.Project != nil || b.LastHeartbeat != nil || b.Status != protocol.StatusBootstrapping {
		t.Fatalf("reloaded session b = %+v; want no summary, project or heartbeat", b)
	}
	snap, err := s.ArtifactsSince(ctx, "a", 2)
	if err != nil || snap.Rev != 3 || len(snap.Artifacts) != 1 || snap.Artifacts[0].Seq != 2 {
		t.Fatalf("ArtifactsSince(2) = %+v, %v", snap, err)
	}
	cmds, err := s.Commands(ctx, "a", 1, 2)
	if err != nil || len(cmds) != 1 || string(cmds[0].Body) != `{"id":2}` || cmds[0].ID != 2 || cmds[0].CreatedAt != 6 {
		t.Fatalf("Commands(1,2) = %+v, %v", cmds, err)
	}
	evs, err := s.Events(ctx, "a")
	if err != nil || len(evs) != 1 || evs[0].AgentSeq != 4 || evs[0].Instance != "i1" || evs[0].Pos != 1 {
		t.Fatalf("Events = %+v, %v", evs, err)
	}
	list, err := s.Sessions(ctx, "proj")
	if err != nil || len(list) != 1 || list[0].ID != "a" {
		t.Fatalf("Sessions(proj) = %+v, %v", list, err)
	}
	if got, err := s.Session(ctx, "a"); err != nil || got.Status != protocol.StatusLive || *got.Summary != "sum" {
		t.Fatalf("Session(a) = %+v, %v", got, err)
	}
}

// An event body is kept byte for byte, whatever it holds: the server
// stores what the sandbox sent.
func testEventsKeepBytes(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	bodies := [][]byte{
		[]byte(`{"type":"notice","text":"é \u0000 \ud83d"}`),
		[]byte("{\"type\":\"notice\",\"text\":\"\xff\xfe\"}"), // not UTF-8
		[]byte(`{ "type" : "notice" }`),
	}
	var evs []store.Event
	for i, b := range bodies {
		evs = append(evs, store.Event{Pos: int64(i + 1), Instance: "i", AgentSeq: int64(i + 1), Body: b})
	}
	commit(t, s, store.CreateSession{Session: newSession("a")}, store.AppendEvents{SessionID: "a", Events: evs})
	got, err := s.Events(ctx, "a")
	if err != nil || len(got) != len(bodies) {
		t.Fatalf("Events = %d, %v", len(got), err)
	}
	for i := range bodies {
		if string(got[i].Body) != string(bodies[i]) {
			t.Errorf("event %d = %q; want %q", i+1, got[i].Body, bodies[i])
		}
	}
}

// Reads run while commits run, from many goroutines, on one store.
func testConcurrent(t *testing.T, open Opener) {
	s := open(t)
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
	if list, err := s.Sessions(ctx, ""); err != nil || len(list) != 9 {
		t.Fatalf("Sessions = %d, %v; want 9", len(list), err)
	}
}

// ArtifactsSince reads the artifacts and the session's rev from one
// snapshot: while commits move both, every snapshot's rev is the highest
// rev among all the artifacts it returned with after = 0.
func testSnapshotMatchesRev(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: newSession("a")})
	const n = 60
	done := make(chan error, 1)
	go func() {
		for i := int64(1); i <= n; i++ {
			up := store.Session{Session: newSession("a"), Rev: i}
			err := s.Commit(ctx, []store.Op{
				store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{{Seq: i, Rev: i, Body: []byte(`{}`)}}},
				store.UpdateSession{Session: up},
			})
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for finished := false; !finished; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished = true
		default:
		}
		snap, err := s.ArtifactsSince(ctx, "a", 0)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(snap.Artifacts)) != snap.Rev {
			t.Fatalf("snapshot rev %d with %d artifacts", snap.Rev, len(snap.Artifacts))
		}
		for i, a := range snap.Artifacts {
			if a.Rev != int64(i+1) {
				t.Fatalf("snapshot artifact %d has rev %d; not in rev order", i, a.Rev)
			}
		}
	}
}

func TestCheckWrite(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t))
	ctx := context.Background()
	for range 2 {
		if err := s.CheckWrite(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM write_probe`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("write_probe rows = %d, %v; want 0", n, err)
	}
	// A read-only session cannot write: the check says so.
	if _, err := s.pool.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{s.pool.Config().ConnConfig.Database}.Sanitize()+` SET default_transaction_read_only = on`); err != nil {
		t.Fatal(err)
	}
	s.pool.Reset() // new connections pick up the setting
	if err := s.CheckWrite(ctx); err == nil {
		t.Fatal("CheckWrite succeeded on a read-only database")
	}
}
