package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/client"
)

// TestWatchReplayCut: the first connection of rein watch ends in the
// middle of the replay, after some snapshots and before snapshot_complete
// (a dropped connection, or the server cutting a slow terminal's stream
// with --write-timeout, as happens on a long transcript). The stream
// resumes after the last snapshot delivered, so the server does not send
// those again: the transcript must still print them, and print the same
// as a watch that was never cut.
func TestWatchReplayCut(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	postEvents(t, s, "s1", tok, scripted)
	want := mustRein(t, s.URL(), "watch", "s1", "--until-idle", "--idle-grace", "0")

	target, _ := url.Parse(s.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1
	var streams atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/stream") || streams.Add(1) > 1 {
			proxy.ServeHTTP(w, r)
			return
		}
		// The first stream: forward its first three events, then end.
		forwardStream(t, s, w, r, func(i int, ev client.Event) bool {
			if ev.Name != "artifact_snapshot" {
				t.Errorf("event %d %+v; want a snapshot", i, ev)
			}
			return i == 2
		})
	}))
	defer front.Close()

	r := rein(t, front.URL, "watch", "s1", "--until-idle", "--idle-grace", "0")
	if r.code != 0 || streams.Load() < 2 {
		t.Fatalf("watch through the cut: exit %d after %d connections, stderr %q", r.code, streams.Load(), r.stderr)
	}
	if r.stdout != want {
		t.Errorf("watch through a replay cut after 3 snapshots printed\n%s\nwant (as uncut)\n%s", r.stdout, want)
	}
}

// forwardStream opens the stream r asks for on s and writes its events to
// w, one SSE message each, until last says the one just written was the
// last (i counts from 0): a front server that ends a stream where a test
// wants it cut.
func forwardStream(t *testing.T, s *app.App, w http.ResponseWriter, r *http.Request, last func(i int, ev client.Event) bool) {
	t.Helper()
	cl, _ := client.New(s.URL(), testToken)
	body, err := cl.OpenStream(r.Context(), r.URL.Path, "")
	if err != nil {
		t.Errorf("open the stream: %v", err)
		return
	}
	defer body.Close()
	w.Header().Set("Content-Type", "text/event-stream")
	er := client.NewEventReader(body)
	for i := 0; ; i++ {
		ev, err := er.Next()
		if err != nil {
			t.Errorf("stream: %v", err)
			return
		}
		if ev.ID != "" {
			fmt.Fprintf(w, "id: %s\n", ev.ID)
		}
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Name, ev.Data)
		if last(i, ev) {
			return
		}
	}
}

// TestWatchReplayOfAnOlderHistoryCut: the server rein watch follows comes
// back with an older history (restored from a backup: a copy of its
// database from before messages 5-7), whose replay of everything is cut
// after two snapshots; by the next connection the restored session has
// passed the revision watch had, with other messages 5-11. Watch resumed
// after that revision: it went on showing "gone 5".."gone 7" as the
// session's and never printed "after 5".."after 7".
func TestWatchReplayOfAnOlderHistoryCut(t *testing.T) {
	front, _, _ := olderHistoryCut(t)
	r := rein(t, front, "watch", "s1", "--until-idle", "--idle-grace", "0")
	if r.code != 0 {
		t.Fatalf("watch: exit %d, stderr %q", r.code, r.stderr)
	}
	_, now, _ := strings.Cut(r.stdout, "gone 7\n")
	for i := 5; i < 12; i++ {
		if !strings.Contains(now, fmt.Sprintf("after %d\n", i)) {
			t.Fatalf("watch did not print the restored session's message %d after the old one's; output\n%s", i, r.stdout)
		}
	}
}

// TestWatchJSONMarksEachConnection: rein watch --json prints the events
// as they come, so a script keeps the artifacts itself and, on a
// snapshot_complete with "full":true, drops those the replay did not
// send. Which events the replay sent it can tell only if it knows where
// the connection began: each one starts with a "connected" line. Through
// the restored history of TestWatchReplayOfAnOlderHistoryCut (three
// connections: the newer history, the older one's cut replay, its full
// replay again), a script that folds the lines that way must end with
// what a fresh watch of the restored server shows.
func TestWatchJSONMarksEachConnection(t *testing.T) {
	front, older, conns := olderHistoryCut(t)
	r := rein(t, front, "watch", "s1", "--json", "--until-idle", "--idle-grace", "0")
	if r.code != 0 {
		t.Fatalf("watch --json: exit %d, stderr %q", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if !strings.HasPrefix(lines[0], `{"event":"connected"`) {
		t.Fatalf("watch --json began with %s; want a connected line", lines[0])
	}
	// Three connections delivered events: the newer history's, the
	// older one's cut replay and its replay again. (The client drops a
	// fourth at its headers: it resumed after the revision the cut
	// replay had gone below; client.StreamArtifacts.)
	if n := strings.Count(r.stdout, `{"event":"connected"`); n != 3 {
		t.Fatalf("watch --json printed %d connected lines through %d connections; want 3:\n%s", n, conns.Load(), r.stdout)
	}
	got := foldWatchJSON(t, r.stdout)
	fresh := rein(t, older.URL(), "watch", "s1", "--json", "--until-idle", "--idle-grace", "0")
	if fresh.code != 0 {
		t.Fatalf("fresh watch --json: exit %d, stderr %q", fresh.code, fresh.stderr)
	}
	if want := foldWatchJSON(t, fresh.stdout); !maps.Equal(got, want) {
		t.Errorf("a script folding watch --json through the restore holds\n%v\nwant (a fresh watch of the restored server)\n%v", got, want)
	}
}

// foldWatchJSON is what a script does with rein watch --json: each
// artifact's text by seq, a snapshot replacing it, a full replay's end
// dropping what this connection's replay did not send.
func foldWatchJSON(t *testing.T, out string) map[int64]string {
	t.Helper()
	held := map[int64]string{}
	sent := map[int64]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var l struct {
			Event string `json:"event"`
			Data  struct {
				Artifact *protocol.Artifact `json:"artifact"`
				Seq      int64              `json:"seq"`
				Field    string             `json:"field"`
				Append   string             `json:"append"`
				Full     bool               `json:"full"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("watch --json line %q: %v", line, err)
		}
		switch l.Event {
		case "connected":
			clear(sent)
		case "artifact_snapshot", "artifact_created":
			a := l.Data.Artifact
			held[a.Seq] = a.String("text")
			sent[a.Seq] = true
		case "artifact_updated":
			if l.Data.Field == "text" {
				held[l.Data.Seq] += l.Data.Append
			}
		case "snapshot_complete":
			if l.Data.Full {
				maps.DeleteFunc(held, func(seq int64, _ string) bool { return !sent[seq] })
			}
		}
	}
	return held
}

// olderHistoryCut serves rein watch, at front, the session s1 of a server
// that comes back with an older history (restored from a backup: a copy
// of its database from before messages 5-7), whose replay of everything
// is cut after two snapshots; by the next connection the restored session
// (older) has passed the revision watch had, with other messages 5-11.
// conns counts the stream connections.
func olderHistoryCut(t *testing.T) (front string, older *app.App, conns *atomic.Int32) {
	t.Helper()
	messages := func(from, to int, what string) string {
		var evs []string
		for i := from; i < to; i++ {
			evs = append(evs, fmt.Sprintf(`{"type":"text_delta","id":"m%d","delta":"%s %d\n"}`, i, what, i), fmt.Sprintf(`{"type":"text_end","id":"m%d"}`, i))
		}
		return "[" + strings.Join(evs, ",") + "]"
	}
	dir := t.TempDir()
	newerDB, olderDB := filepath.Join(dir, "newer.db"), filepath.Join(dir, "older.db")
	first, err := app.New(app.Options{DBPath: newerDB, APIToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	tok := createSession(t, first, "s1")
	postEvents(t, first, "s1", tok, `[{"type":"turn_started","turnId":"t1","source":"user"}]`)
	postEvents(t, first, "s1", tok, messages(0, 5, "kept"))
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(newerDB)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(olderDB, b, 0o600); err != nil { // the backup
		t.Fatal(err)
	}
	newer := startServer(t, app.Options{DBPath: newerDB})
	postEvents(t, newer, "s1", tok, messages(5, 8, "gone"))
	older = startServer(t, app.Options{DBPath: olderDB})

	conns = new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n := conns.Add(1); n {
		case 1: // the newer history, to the end of its replay
			forwardResume(w, r, newer.URL(), func(_ int, ev client.Event) bool { return ev.Name == "snapshot_complete" })
		case 2: // the restored one: its replay of everything, cut
			forwardResume(w, r, older.URL(), func(i int, _ client.Event) bool { return i == 1 })
		default:
			if n == 3 { // meanwhile the restored session moved on
				postEvents(t, older, "s1", tok, messages(5, 12, "after"))
				postEvents(t, older, "s1", tok, `[{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}]`)
			}
			forwardResume(w, r, older.URL(), func(int, client.Event) bool { return false })
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, older, conns
}

// forwardResume answers the stream request r with target's answer to it
// (r's headers, Last-Event-ID and token included), one SSE message per
// event, until last says the one just written was the last (i counts
// from 0).
func forwardResume(w http.ResponseWriter, r *http.Request, target string, last func(i int, ev client.Event) bool) {
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, target+r.URL.Path, nil)
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return // the client went away
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
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
