package sqlite

import (
	"context"
	"path/filepath"
	"testing"

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
