package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/client"
)

// TestSessionsWatchJSONAfterReconnect: a script follows rein sessions
// --watch --json and keeps the sessions it reads. The session stream
// has no resume: each connection starts with a fresh snapshot, and a
// session deleted while rein was away is simply not in it. The output
// must say where a snapshot is whole, so the script can drop what the
// snapshot lacks: each snapshot_complete says "full":true, and a
// snapshot cut before its end is not printed (its lines would be taken
// for part of the next one). Here the first connection gets its whole
// snapshot, the second is cut after one session of it, and before each
// reconnect a session is deleted.
func TestSessionsWatchJSONAfterReconnect(t *testing.T) {
	s := startServer(t, app.Options{})
	mustRein(t, s.URL(), "create", "alpha")
	mustRein(t, s.URL(), "create", "beta")

	target, _ := url.Parse(s.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1
	var conns atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/sessions/stream" {
			proxy.ServeHTTP(w, r)
			return
		}
		switch conns.Add(1) {
		case 1: // the whole snapshot, then the connection drops
			forwardStream(t, s, w, r, func(_ int, ev client.Event) bool { return ev.Name == protocol.SSESnapshotComplete })
		case 2: // away: alpha deleted; the snapshot is cut after beta
			mustRein(t, s.URL(), "rm", "alpha")
			forwardStream(t, s, w, r, func(i int, _ client.Event) bool { return i == 0 })
		case 3: // away again: beta deleted, gamma created
			mustRein(t, s.URL(), "rm", "beta")
			mustRein(t, s.URL(), "create", "gamma")
			proxy.ServeHTTP(w, r)
		default:
			proxy.ServeHTTP(w, r)
		}
	}))
	defer front.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan result, 1)
	go func() { done <- reinTo(t, ctx, &out, &errOut, front.URL, "sessions", "--watch", "--json") }()
	for conns.Load() < 3 || !strings.Contains(out.String(), `"gamma"`) {
		waitFor(t, &out, `"gamma"`)
	}
	mustRein(t, s.URL(), "create", "delta")
	waitFor(t, &out, `"session_created","data":{"session":{"id":"delta"`)
	cancel()
	if r := <-done; r.code != 130 {
		t.Fatalf("interrupted watch: exit %d, stderr %q", r.code, r.stderr)
	}

	// What a script reading the output holds: a snapshot_complete with
	// "full" replaces what it holds with the snapshot it closes.
	held, fresh := map[string]bool{}, map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var l streamLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		switch l.Event {
		case protocol.SSESessionSnapshot, protocol.SSESessionCreated:
			var p protocol.SessionPayload
			if err := json.Unmarshal(l.Data, &p); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			if l.Event == protocol.SSESessionCreated {
				held[p.Session.ID] = true
			} else {
				fresh[p.Session.ID] = true
			}
		case protocol.SSESessionRemoved:
			var r protocol.SessionRemoved
			if err := json.Unmarshal(l.Data, &r); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			delete(held, r.ID)
		case protocol.SSESnapshotComplete:
			var c protocol.SnapshotComplete
			if err := json.Unmarshal(l.Data, &c); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			if !c.Full {
				t.Errorf("%s: no \"full\":true, though every snapshot of the session stream is whole", line)
				continue
			}
			held, fresh = fresh, map[string]bool{}
		}
	}
	var got []string
	for id := range held {
		got = append(got, id)
	}
	sort.Strings(got)
	if strings.Join(got, ",") != "delta,gamma" {
		t.Errorf("a script reading the output holds %v, want [delta gamma] (alpha and beta were deleted while rein was away); output\n%s", got, out.String())
	}
}
