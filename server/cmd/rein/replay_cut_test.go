package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

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
