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

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
)

// TestApproveReadsNotTheTranscript: rein approve and rein deny on a long
// session. They read the session's whole transcript (GET /artifacts) to
// find the one request to answer: as much memory as the transcript, and
// on a slow link more time than a request may take (a minute), so that a
// long session's request could not be answered from the command line at
// all. The pending request is in the inbox (GET /approvals), a handful of
// requests; the transcript is read only for one that is not pending, to
// say why.
func TestApproveReadsNotTheTranscript(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	next := sandbox(t, s, "s1", tok)
	postEvents(t, s, "s1", tok, `[{"type":"turn_started","turnId":"t1","source":"user"},
		{"type":"tool_call_start","id":"build","name":"shell","title":"make"}]`)
	chunk := strings.Repeat("y", 256<<10)
	for range 16 { // 4 MiB of output
		postEvents(t, s, "s1", tok, fmt.Sprintf(`[{"type":"tool_output_delta","id":"build","delta":%q}]`, chunk))
	}
	postEvents(t, s, "s1", tok, `[{"type":"tool_call_end","id":"build","status":"completed"},
		{"type":"permission_requested","id":"perm-1","title":"push","options":[{"id":"no","name":"No","kind":"reject_once"},{"id":"yes","name":"Yes","kind":"allow_once"}]},
		{"type":"permission_requested","id":"perm-2","title":"tag","options":[{"id":"no","name":"No","kind":"reject_once"},{"id":"yes","name":"Yes","kind":"allow_once"}]}]`)

	target, _ := url.Parse(s.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	var read atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/artifacts") {
			cw := &countingWriter{ResponseWriter: w}
			proxy.ServeHTTP(cw, r)
			read.Add(cw.n)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()

	if out := mustRein(t, front.URL, "approve", "s1", "perm-1"); out != "approved perm-1 with option yes (command 1)\n" {
		t.Errorf("approve printed %q", out)
	}
	if got, want := next(), (protocol.Command{ID: 1, Type: protocol.CommandPermissionResponse, RequestID: "perm-1", OptionID: "yes", Outcome: protocol.OutcomeSelected, RequestSeq: 3}); got != want {
		t.Errorf("sandbox got %+v, want %+v", got, want)
	}
	if out := mustRein(t, front.URL, "deny", "s1", "perm-2"); out != "denied perm-2 with option no (command 2)\n" {
		t.Errorf("deny printed %q", out)
	}
	if n := read.Load(); n != 0 {
		t.Errorf("rein approve and deny read %d bytes of the transcript to answer a pending request; want none", n)
	}
}

// countingWriter counts the body bytes written through it.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// A server from before the inbox (no GET /approvals, 404) is answered as
// before: the request found among the session's artifacts.
func TestApproveWithoutInbox(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	next := sandbox(t, s, "s1", tok)
	postEvents(t, s, "s1", tok, `[{"type":"permission_requested","id":"perm-1","title":"push","options":[{"id":"no","name":"No","kind":"reject_once"},{"id":"yes","name":"Yes","kind":"allow_once"}]}]`)
	target, _ := url.Parse(s.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/approvals" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"code":"not_found","message":"no route GET /approvals"}`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	if out := mustRein(t, front.URL, "approve", "s1", "perm-1"); out != "approved perm-1 with option yes (command 1)\n" {
		t.Errorf("approve printed %q", out)
	}
	if got := next(); got.RequestID != "perm-1" || got.OptionID != "yes" || got.RequestSeq != 1 {
		t.Errorf("sandbox got %+v", got)
	}
}

// TestApproveAnsweredReadsAPageAtATime: rein approve for a request that
// is no longer pending (answered already, or a mistyped id) is not in
// the inbox, and the session's artifacts say why. Read in one answer,
// on a long session that was the whole transcript: as much memory, and
// more time on a slow link than one request may take (a minute). They
// are read a page at a time, and only the request is kept.
func TestApproveAnsweredReadsAPageAtATime(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	next := sandbox(t, s, "s1", tok)
	postEvents(t, s, "s1", tok, `[{"type":"turn_started","turnId":"t1","source":"user"},
		{"type":"permission_requested","id":"perm-1","title":"push","options":[{"id":"no","name":"No","kind":"reject_once"},{"id":"yes","name":"Yes","kind":"allow_once"}]}]`)
	text := strings.Repeat("m", 4<<10)
	for b := range 20 { // 1,000 messages, 4 MiB
		var evs []string
		for i := range 50 {
			evs = append(evs, fmt.Sprintf(`{"type":"user_message","id":"u%d-%d","text":%q}`, b, i, text))
		}
		postEvents(t, s, "s1", tok, "["+strings.Join(evs, ",")+"]")
	}
	mustRein(t, s.URL(), "approve", "s1", "perm-1")
	next()
	postEvents(t, s, "s1", tok, `[{"type":"permission_resolved","id":"perm-1","outcome":"selected","optionId":"yes"}]`)

	target, _ := url.Parse(s.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	var reads, largest atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/artifacts") {
			cw := &countingWriter{ResponseWriter: w}
			proxy.ServeHTTP(cw, r)
			reads.Add(1)
			for n := largest.Load(); cw.n > n && !largest.CompareAndSwap(n, cw.n); n = largest.Load() {
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()

	for _, c := range []struct{ request, want string }{
		{"perm-1", `permission request "perm-1" is already approved`},
		{"perm-9", `session s1 has no permission request "perm-9"`},
	} {
		r := rein(t, front.URL, "approve", "s1", c.request)
		if r.code != 1 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("approve %s: exit %d, stderr %q; want exit 1 saying %q", c.request, r.code, r.stderr, c.want)
		}
	}
	// A page is at most 1 MiB of bodies (one artifact at least).
	if n := largest.Load(); n > 2<<20 {
		t.Errorf("one answer of GET /artifacts was %d KiB (%d reads): the transcript read at once, not a page at a time", n>>10, reads.Load())
	}
}

// A server from before artifact pages ignores after and limit and
// answers with the whole list: rein approve reads it as before.
func TestApproveAnsweredWithoutPages(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	postEvents(t, s, "s1", tok, `[{"type":"permission_requested","id":"perm-1","title":"push","options":[{"id":"yes","name":"Yes","kind":"allow_once"}]},
		{"type":"permission_resolved","id":"perm-1","outcome":"selected","optionId":"yes"}]`)
	target, _ := url.Parse(s.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/artifacts") {
			r.URL.RawQuery = ""
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	r := rein(t, front.URL, "approve", "s1", "perm-1")
	if want := `permission request "perm-1" is already approved`; r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("approve: exit %d, stderr %q; want exit 1 saying %q", r.code, r.stderr, want)
	}
}
