package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/rein-ai/rein/server/store"
)

// testVersions: UpdateSession stores Version and StreamEpoch; Expect
// passes on the stored version and fails the whole commit with a
// *StaleError naming the session otherwise, also for a session that is
// gone.
func testVersions(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "")}, store.CreateSession{Session: session("b", 1, "")})
	load := func(id string) store.Session {
		t.Helper()
		all, err := s.LoadSessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range all {
			if r.ID == id {
				return r
			}
		}
		t.Fatalf("session %s not loaded", id)
		return store.Session{}
	}
	if r := load("a"); r.Version != 0 || r.StreamEpoch != 0 {
		t.Fatalf("new session: version %d epoch %d; want 0 0", r.Version, r.StreamEpoch)
	}
	a := load("a")
	a.Version, a.StreamEpoch, a.Rev = 1, 3, 7
	commit(t, s, store.Expect{SessionID: "a", Version: 0}, store.UpdateSession{Session: a})
	if r := load("a"); r.Version != 1 || r.StreamEpoch != 3 || r.Rev != 7 {
		t.Fatalf("after update: version %d epoch %d rev %d; want 1 3 7", r.Version, r.StreamEpoch, r.Rev)
	}
	// A writer that read version 0 is stale now: nothing of its commit
	// is written.
	stale := a
	stale.Version, stale.Rev = 1, 99
	err := s.Commit(ctx, []store.Op{
		store.Expect{SessionID: "b", Version: 0},
		store.Expect{SessionID: "a", Version: 0},
		store.AppendEvents{SessionID: "b", Events: []store.Event{{Pos: 1, Body: []byte(`{}`)}}},
		store.UpdateSession{Session: stale},
	})
	var se *store.StaleError
	if !errors.As(err, &se) || !slices.Contains(se.IDs, "a") || slices.Contains(se.IDs, "b") {
		t.Fatalf("commit expecting an old version: %v; want a *StaleError naming a only", err)
	}
	if r := load("a"); r.Rev != 7 {
		t.Errorf("a stale commit wrote rev %d", r.Rev)
	}
	if ev, _ := s.Events(ctx, "b"); len(ev) != 0 {
		t.Errorf("a stale commit wrote %d events of another session", len(ev))
	}
	commit(t, s, store.DeleteSession{ID: "b"})
	if err := s.Commit(ctx, []store.Op{store.Expect{SessionID: "b", Version: 0}}); !errors.As(err, &se) || !slices.Equal(se.IDs, []string{"b"}) {
		t.Errorf("expecting a deleted session: %v; want a *StaleError naming b", err)
	}
	// Created again: its version counts from 0 again, and only its
	// createdAt tells it from the one a writer read.
	commit(t, s, store.CreateSession{Session: session("b", 2, "")})
	if err := s.Commit(ctx, []store.Op{store.Expect{SessionID: "b", Version: 0, CreatedAt: 1}}); !errors.As(err, &se) || !slices.Equal(se.IDs, []string{"b"}) {
		t.Errorf("expecting the session deleted and created again at its version: %v; want a *StaleError naming b", err)
	}
	commit(t, s, store.Expect{SessionID: "b", Version: 0, CreatedAt: 2})
}
