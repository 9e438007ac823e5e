package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/sqlite"
	"github.com/rein-ai/rein/server/store"
)

// domain runs the domain alone, no HTTP, on a real SQLite file.
func domain(t *testing.T) *Server {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rein.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Store: st, Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestNewNeedsStore(t *testing.T) {
	t.Parallel()
	if _, err := New(Options{}); err == nil || !strings.Contains(err.Error(), "Options.Store") {
		t.Fatalf("New without a store: %v", err)
	}
}

// The feeds carry change records, not wire bytes: an event name, the
// protocol's JSON and the revision, which the adapter frames.
func TestFeedsCarryChangeRecords(t *testing.T) {
	t.Parallel()
	s := domain(t)
	ctx := context.Background()
	sessions, err := s.WatchSessions(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sessions.Live.Close()
	if _, err := s.CreateSession(ctx, "a", "p"); err != nil {
		t.Fatal(err)
	}
	cmds, err := s.OpenCommandStream(ctx, "a", Sandbox{Instance: "i1"}, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer cmds.Release()
	defer cmds.Live.Close()
	arts, err := s.WatchArtifacts(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer arts.Live.Close()
	var replayed []store.Artifact
	rev, err := arts.Replay(ctx, func(p []store.Artifact) error { replayed = append(replayed, p...); return nil })
	if err != nil || len(replayed) != 0 || rev != 0 {
		t.Fatalf("replay of a new session: %v, rev %d, %v", replayed, rev, err)
	}
	if _, err := s.AppendEvents(ctx, "a", "i1", []protocol.Event{{Type: protocol.EventUserMessage, Text: "hi"}}); err != nil {
		t.Fatal(err)
	}
	id, err := s.SendCommand(ctx, "a", protocol.Command{Type: protocol.CommandAbort})
	if err != nil {
		t.Fatal(err)
	}

	<-arts.Live.Ready()
	got := arts.Live.Take()
	if len(got) != 1 || got[0].Event != protocol.SSEArtifactCreated || got[0].Seq != 1 {
		t.Fatalf("artifact records %+v", got)
	}
	var p protocol.ArtifactPayload
	if err := json.Unmarshal(got[0].Data, &p); err != nil || p.Artifact.Rev != 1 {
		t.Fatalf("artifact record data %s: %v", got[0].Data, err)
	}
	<-cmds.Live.Ready()
	if got := cmds.Live.Take(); len(got) != 1 || got[0].Event != protocol.SSECommand || got[0].Seq != id || !strings.Contains(string(got[0].Data), `"abort"`) {
		t.Fatalf("command records %+v", got)
	}
	<-sessions.Live.Ready()
	var events []string
	for _, m := range sessions.Live.Take() {
		if m.Key != "p" || m.Seq != 0 {
			t.Fatalf("session record %+v: want Key p, no Seq", m)
		}
		events = append(events, m.Event)
	}
	if len(events) == 0 || events[0] != protocol.SSESessionCreated {
		t.Fatalf("session records %v", events)
	}
}
