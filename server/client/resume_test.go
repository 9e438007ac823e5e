package client_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/client"
)

// TestStreamReplayOfAnOlderHistoryCut: the server a client follows comes
// back with an older history of the session (restored from a backup a
// few revisions old), so the client's resume gets a replay of every
// artifact, and that replay is cut before its end; by the time the
// client connects again the session has moved past the revision the
// client had. It resumed after that old revision: what the cut replay
// had not sent yet was never sent, and what the client held of the
// history that went away (artifacts the restored session has under other
// contents, or not at all) stayed, as if it were the session's. The
// client must end up holding exactly what the server has.
func TestStreamReplayOfAnOlderHistoryCut(t *testing.T) {
	dir := t.TempDir()
	newerDB, olderDB := filepath.Join(dir, "newer.db"), filepath.Join(dir, "older.db")
	first := openApp(t, newerDB)
	created, err := clientOf(t, first.URL()).CreateSession(t.Context(), "s", "")
	if err != nil {
		t.Fatal(err)
	}
	tok := created.SandboxToken
	postAs(t, first.URL(), tok, `{"type":"turn_started","turnId":"t1","source":"user"}`)
	postAs(t, first.URL(), tok, messages(0, 20, "kept")...)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	copyDB(t, newerDB, olderDB) // the backup
	newer := openApp(t, newerDB)
	postAs(t, newer.URL(), tok, messages(20, 30, "gone")...) // not in the backup
	older := openApp(t, olderDB)

	var conns atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n := conns.Add(1); n {
		case 1: // the newer history, to the end of its replay
			forwardStream(t, newer.URL(), w, r, func(i int, ev client.Event) bool { return ev.Name == protocol.SSESnapshotComplete })
		case 2: // the older one, restored: its replay of everything, cut
			forwardStream(t, older.URL(), w, r, func(i int, ev client.Event) bool { return i == 1 })
		default:
			if n == 3 { // meanwhile the restored session moved on
				postAs(t, older.URL(), tok, messages(20, 45, "after the restore")...)
			}
			forwardStream(t, older.URL(), w, r, func(int, client.Event) bool { return false })
		}
	}))
	defer front.Close()

	c := clientOf(t, front.URL)
	model := client.NewTranscript()
	err = c.StreamArtifacts(t.Context(), "s", client.StreamOptions{MinBackoff: time.Millisecond}, func(ev client.ArtifactEvent) error {
		if _, err := model.Apply(ev); err != nil {
			return err
		}
		if ev.Name == protocol.SSESnapshotComplete && conns.Load() >= 3 {
			return client.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want, err := clientOf(t, older.URL()).Artifacts(t.Context(), "s")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := artifactsJSON(t, model.Artifacts()), artifactsJSON(t, want); got != want {
		t.Errorf("the client holds\n%s\nthe server has\n%s", got, want)
	}
}

// clientOf is a client of base, without a token.
func clientOf(t *testing.T, base string) *client.Client {
	t.Helper()
	c, err := client.New(base, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// openApp runs a real rein-server on the SQLite file db, without auth.
func openApp(t *testing.T, db string) *app.App {
	t.Helper()
	s, err := app.New(app.Options{DBPath: db, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// copyDB copies a closed server's database files.
func copyDB(t *testing.T, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(from + suffix)
		if os.IsNotExist(err) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// messages is the events of assistant messages m<from> to m<to-1>, each
// streamed and ended, saying what.
func messages(from, to int, what string) []string {
	var evs []string
	for i := from; i < to; i++ {
		evs = append(evs,
			fmt.Sprintf(`{"type":"text_delta","id":"m%d","delta":"%s %d"}`, i, what, i),
			fmt.Sprintf(`{"type":"text_end","id":"m%d"}`, i))
	}
	return evs
}

// postAs posts events as session s's sandbox.
func postAs(t *testing.T, base, tok string, events ...string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/sessions/s/events", strings.NewReader("["+strings.Join(events, ",")+"]"))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		t.Errorf("post events: %d %s", resp.StatusCode, b)
	}
}

// forwardStream answers r with the stream r asks target for (with r's
// Last-Event-ID), its headers and its events one SSE message each, until
// last says the one just written was the last (i counts from 0): a front
// that ends a stream where a test wants it cut.
func forwardStream(t *testing.T, target string, w http.ResponseWriter, r *http.Request, last func(i int, ev client.Event) bool) {
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, target+r.URL.Path, nil)
	req.Header.Set("Last-Event-ID", r.Header.Get("Last-Event-ID"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return // the client went away
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", protocol.HeaderSessionCreated} {
		w.Header().Set(h, resp.Header.Get(h))
	}
	w.WriteHeader(resp.StatusCode)
	er := client.NewEventReader(resp.Body)
	for i := 0; ; i++ {
		ev, err := er.Next()
		if err != nil {
			return
		}
		if ev.ID != "" {
			fmt.Fprintf(w, "id: %s\n", ev.ID)
		}
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Name, ev.Data)
		w.(http.Flusher).Flush()
		if last(i, ev) {
			return
		}
	}
}

// artifactsJSON is a list of artifacts, one JSON line each.
func artifactsJSON(t *testing.T, list []*protocol.Artifact) string {
	t.Helper()
	var b strings.Builder
	for _, a := range list {
		j, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}
