package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/client"
)

// TestUntilIdleNotJudgedWhileDisconnected: rein watch --until-idle saw no
// turn running and began its grace, and then lost its connection. While
// it is away a turn may start, which it cannot see: it must not exit as
// idle before a new connection's replay says so again. The stream here
// ends right after the first replay and is refused (503) for longer than
// the grace; meanwhile turn t2 starts. Watch must follow t2 to its end.
func TestUntilIdleNotJudgedWhileDisconnected(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	postEvents(t, s, "s1", tok, `[
		{"type":"turn_started","turnId":"t1","source":"user"},
		{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}]`)

	target, _ := url.Parse(s.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1
	var streams atomic.Int32
	var open atomic.Bool // reconnects are let through
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/stream") || open.Load() {
			proxy.ServeHTTP(w, r)
			return
		}
		if streams.Add(1) > 1 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"code":"unavailable","message":"restarting"}`)
			return
		}
		// The first stream: its replay, then the connection ends.
		forwardStream(t, s, w, r, func(_ int, ev client.Event) bool { return ev.Name == "snapshot_complete" })
	}))
	defer front.Close()

	var out, errOut syncBuffer
	done := make(chan result, 1)
	go func() {
		done <- reinTo(t, context.Background(), &out, &errOut, front.URL, "watch", "s1", "--until-idle", "--idle-grace", "300ms")
	}()
	// Five notices: the backoff has waited at least 50+100+200+400ms
	// since the connection ended, longer than the grace.
	deadline := time.After(testDeadline)
	for strings.Count(errOut.String(), "reconnecting in") < 5 {
		select {
		case r := <-done:
			t.Fatalf("watch exited (%d) while disconnected, as if idle; stdout\n%s\nstderr\n%s", r.code, r.stdout, r.stderr)
		case <-deadline:
			t.Fatalf("watch did not reconnect 5 times; stderr\n%s", errOut.String())
		case <-time.After(5 * time.Millisecond): // polling its output, as waitFor does
		}
	}
	postEvents(t, s, "s1", tok, `[{"type":"turn_started","turnId":"t2","source":"user"}]`)
	open.Store(true)
	waitFor(t, &out, "── turn t2 ──")
	postEvents(t, s, "s1", tok, `[
		{"type":"user_message","id":"u2","text":"second"},
		{"type":"turn_completed","turnId":"t2","stopReason":"end_turn"}]`)
	r := watchEnded(t, done, &out)
	if !strings.Contains(r.stdout, "› second") {
		t.Errorf("watch ended before turn t2's end; stdout\n%s", r.stdout)
	}
}

// TestUntilIdleAcrossReconnects: rein watch --until-idle judges by turn
// counts its model keeps as events come. They must stay right across a
// reconnect: the turn running when the connection dropped ended while
// rein was away and another started, and the resume's replay says both.
// Watch must neither exit then (a turn runs) nor miss the end of the new
// one: it follows t2 to its end and exits.
func TestUntilIdleAcrossReconnects(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	postEvents(t, s, "s1", tok, `[
		{"type":"turn_started","turnId":"t1","source":"user"},
		{"type":"user_message","id":"u1","text":"first"}]`)
	p := newProxy(t, s.URL())
	out, done := watchInBackground(t, p.URL(), "s1")
	waitFor(t, out, "› first")

	p.Cut()
	postEvents(t, s, "s1", tok, `[
		{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"},
		{"type":"turn_started","turnId":"t2","source":"user"},
		{"type":"user_message","id":"u2","text":"second"}]`)
	p.Restore()
	waitFor(t, out, "› second")
	postEvents(t, s, "s1", tok, `[
		{"type":"text_delta","id":"m2","delta":"still working"},
		{"type":"text_end","id":"m2"},
		{"type":"turn_completed","turnId":"t2","stopReason":"end_turn"}]`)
	r := watchEnded(t, done, out)
	if !strings.Contains(r.stdout, "still working") || !strings.HasSuffix(r.stdout, "── completed (end_turn) ──\n") {
		t.Errorf("watch ended before turn t2's end; stdout\n%s", r.stdout)
	}
	if p.Accepted() < 2 {
		t.Errorf("watch connected %d times, want a reconnect", p.Accepted())
	}
}
