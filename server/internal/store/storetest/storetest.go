// Package storetest is the contract every Store adapter must pass: one
// suite, run by each adapter's tests against a real database (SQLite in a
// temp dir, PostgreSQL from pgtest), in the spirit of gocloud.dev's
// drivertest packages. It checks behaviour through the Store methods
// only, never an adapter's tables.
package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/store"
)

// Store is the adapter surface under test (the server's Store interface,
// repeated here so adapters can test against it without importing the
// server package).
type Store interface {
	Session(ctx context.Context, id string) (protocol.Session, error)
	Sessions(ctx context.Context, project string) ([]protocol.Session, error)
	Artifacts(ctx context.Context, id string) ([]store.Artifact, error)
	ArtifactsSince(ctx context.Context, id string, after int64) (store.Snapshot, error)
	Commands(ctx context.Context, id string, after, upTo int64) ([]store.Command, error)
	LoadSessions(ctx context.Context) ([]store.Session, error)
	Events(ctx context.Context, id string) ([]store.Event, error)
	Commit(ctx context.Context, ops []store.Op) error
	SandboxTokens(ctx context.Context) (map[string][32]byte, error)
	Ping(ctx context.Context) error
	Close() error
}

// Opener opens the test's database; each call opens it again (the same
// data), so a test can close a store and reopen it, or hold two at once.
type Opener func(t *testing.T) Store

// Run runs the contract. newDB makes a fresh, empty database for one
// test and returns how to open it.
func Run(t *testing.T, newDB func(t *testing.T) Opener) {
	tests := []struct {
		name string
		f    func(t *testing.T, open Opener)
	}{
		{"CommitIsAtomic", testCommitIsAtomic},
		{"DeleteCascades", testDeleteCascades},
		{"ReloadAfterReopen", testReloadAfterReopen},
		{"NotFound", testNotFound},
		{"ArtifactAppends", testArtifactAppends},
		{"SandboxTokens", testSandboxTokens},
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

func commit(t *testing.T, s Store, ops ...store.Op) {
	t.Helper()
	if err := s.Commit(context.Background(), ops); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func testCommitIsAtomic(t *testing.T, open Opener) {
	s := open(t)
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
	if evs, err := s.Events(ctx, "a"); err != nil || len(evs) != 0 {
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
	if arts, err := s.Artifacts(ctx, "a"); err != nil || len(arts) != 0 {
		t.Fatalf("Artifacts after failed commit = %d, %v; want none", len(arts), err)
	}
	// Updating a session that does not exist fails as not found.
	err = s.Commit(ctx, []store.Op{store.UpdateSession{Session: store.Session{Session: newSession("missing")}}})
	if !errors.Is(err, protocol.ErrNotFound) {
		t.Fatalf("update of a missing session: %v; want not_found", err)
	}
	// A duplicate command id is refused: two writers cannot both take it.
	commit(t, s, store.AddCommand{SessionID: "a", Command: store.Command{ID: 1, Body: []byte(`{"id":1}`)}})
	if err := s.Commit(ctx, []store.Op{store.AddCommand{SessionID: "a", Command: store.Command{ID: 1, Body: []byte(`{"id":1}`)}}}); err == nil {
		t.Fatal("a second command with id 1 was stored")
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

func testNotFound(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	_, err1 := s.Session(ctx, "x")
	_, err2 := s.Artifacts(ctx, "x")
	_, err3 := s.ArtifactsSince(ctx, "x", 0)
	for _, err := range []error{err1, err2, err3} {
		if !errors.Is(err, protocol.ErrNotFound) {
			t.Errorf("err = %v; want not_found", err)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// Appends are merged into reads in order and only for the artifacts that
// have them; a full write drops them; an append to an artifact never
// stored fails the commit.
func testArtifactAppends(t *testing.T, open Opener) {
	s := open(t)
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
	// After the full write, only appends made after it count.
	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 2, Rev: 9, Fields: []store.FieldAppend{{Field: "output", Text: "!"}}}}})
	want := `{"createdAt":1,"id":"x","output":"done!","rev":9,"seq":2,"status":"completed","type":"tool_call"}`
	if arts, _ := s.Artifacts(ctx, "a"); string(arts[1].Body) != want {
		t.Fatalf("append after a full write: %s; want %s", arts[1].Body, want)
	}
}

func testSandboxTokens(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	h1, h2, h3 := sha256.Sum256([]byte("one")), sha256.Sum256([]byte("two")), sha256.Sum256([]byte("three"))
	commit(t, s,
		store.CreateSession{Session: newSession("a")},
		store.CreateSession{Session: newSession("b")},
		store.CreateSession{Session: newSession("old")}, // no token: made before tokens existed
		store.SetSandboxToken{SessionID: "a", Hash: h1, At: 1},
		store.SetSandboxToken{SessionID: "b", Hash: h2, At: 1},
	)
	commit(t, s, store.SetSandboxToken{SessionID: "a", Hash: h3, At: 2}) // rotation replaces
	got, err := s.SandboxTokens(ctx)
	if err != nil || len(got) != 2 || got["a"] != h3 || got["b"] != h2 {
		t.Fatalf("SandboxTokens = %x, %v", got, err)
	}
	if err := s.Commit(ctx, []store.Op{store.SetSandboxToken{SessionID: "old", Hash: h2, At: 3}}); err == nil {
		t.Fatal("the same hash stored for two sessions")
	}
	if err := s.Commit(ctx, []store.Op{store.SetSandboxToken{SessionID: "nope", Hash: h1, At: 3}}); err == nil {
		t.Fatal("token stored for a missing session")
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
