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
		cl, _ := client.New(s.URL(), testToken)
		body, err := cl.OpenStream(r.Context(), r.URL.Path, "")
		if err != nil {
			t.Errorf("open the stream: %v", err)
			return
		}
		defer body.Close()
		w.Header().Set("Content-Type", "text/event-stream")
		er := client.NewEventReader(body)
		for range 3 {
			ev, err := er.Next()
			if err != nil || ev.Name != "artifact_snapshot" {
				t.Errorf("event %+v, %v; want a snapshot", ev, err)
				return
			}
			fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", ev.ID, ev.Name, ev.Data)
		}
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
