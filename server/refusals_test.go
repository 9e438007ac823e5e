package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
)

// The events route says which of its refusals are of the request itself
// (scope "request": a header, the session id in the path) and which are
// of the events it carries (no scope): agentd drops an event the server
// refused, one by one, and must not drop a batch for a header around it.
func TestEventRefusalsSayWhatTheyRefuse(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{MaxBody: 64 << 10, MaxSessionBytes: 2000})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	ok := ev("notice", "level", "info", "message", "m", "agentSeq", 1)
	bad := []any{ev("text_delta", "delta", "ok", "agentSeq", 1), ev("tool_call_start", "id", "t1", "agentSeq", 2)}

	for _, tc := range []struct {
		name, path string
		body       any
		hdr        []string
		// names is what the message must name.
		names string
	}{
		{"instance", "/sessions/a/events", ok, []string{protocol.HeaderInstance, "bad id/"}, protocol.HeaderInstance},
		{"cursor", "/sessions/a/events", ok, []string{protocol.HeaderInstance, "i1", protocol.HeaderCommandCursor, "x"}, protocol.HeaderCommandCursor},
		{"negative cursor", "/sessions/a/events", ok, []string{protocol.HeaderInstance, "i1", protocol.HeaderCommandCursor, "-1"}, protocol.HeaderCommandCursor},
		{"session created 0", "/sessions/a/events", ok, []string{protocol.HeaderInstance, "i1", protocol.HeaderSessionCreated, "0"}, protocol.HeaderSessionCreated},
		{"session created garbled", "/sessions/a/events", ok, []string{protocol.HeaderInstance, "i1", protocol.HeaderSessionCreated, "12x"}, protocol.HeaderSessionCreated},
		// A bad header is what the answer says even when an event is
		// bad too: put right, the request may still fail on the event,
		// but dropping the events for the header would be wrong.
		{"header and event", "/sessions/a/events", bad, []string{protocol.HeaderInstance, "i1", protocol.HeaderSessionCreated, "0"}, protocol.HeaderSessionCreated},
		{"session id", "/sessions/a!/events", ok, []string{protocol.HeaderInstance, "i1"}, "session id"},
		{"command stream", "/sessions/a/commands", nil, []string{protocol.HeaderInstance, "bad id/"}, protocol.HeaderInstance},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := http.MethodPost
			if tc.body == nil {
				method = http.MethodGet
			}
			e := c.wantError(http.StatusBadRequest, protocol.CodeInvalid, method, tc.path, tc.body, tc.hdr...)
			if e.Scope != protocol.ScopeRequest || !strings.Contains(e.Message, tc.names) {
				t.Errorf("%s %s: %+v; want scope %q and a message naming %s", method, tc.path, e, protocol.ScopeRequest, tc.names)
			}
		})
	}

	content := []struct {
		name   string
		status int
		code   protocol.Code
		body   any
	}{
		{"invalid event", http.StatusBadRequest, protocol.CodeInvalid, bad},
		{"not JSON", http.StatusBadRequest, protocol.CodeInvalid, `{"type":`},
		{"event too large", http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, ev("text_delta", "delta", strings.Repeat("x", 65<<10), "agentSeq", 1)},
	}
	for _, tc := range content {
		t.Run(tc.name, func(t *testing.T) {
			e := c.wantError(tc.status, tc.code, http.MethodPost, "/sessions/a/events", tc.body, protocol.HeaderInstance, "i1")
			if e.Scope != "" {
				t.Errorf("%+v; want no scope: the events are what is refused", e)
			}
		})
	}

	// Past its --max-session-bytes (and its reserve) the session refuses
	// the agent's output, event by event: no scope either.
	t.Run("session cap", func(t *testing.T) {
		for seq := 1; seq <= 20; seq++ {
			fill := ev("text_delta", "delta", strings.Repeat("x", 400), "agentSeq", seq)
			status, b := c.do(http.MethodPost, "/sessions/a/events", fill, protocol.HeaderInstance, "i1")
			if status == http.StatusAccepted {
				continue
			}
			e := c.wantError(http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, http.MethodPost, "/sessions/a/events", fill, protocol.HeaderInstance, "i1")
			if e.Scope != "" || !strings.Contains(e.Message, "--max-session-bytes") {
				t.Fatalf("refusal at the cap %s: %+v; want no scope, naming the flag", b, e)
			}
			return
		}
		t.Fatal("20 events of 400 bytes never reached a cap of 2000 bytes")
	})
}

// A page parameter is an integer given once (the OpenAPI document: "400
// naming after unless a non-negative integer"): an empty one, or one given
// twice, was taken as absent or as its first value, so a client that
// appended ?limit= to a URL already holding one got, with a 200, a page
// it did not ask for.
func TestQueryParamsGivenOnce(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	for _, tc := range []struct{ path, name string }{
		{"/sessions/a/events?after=", "after"},
		{"/sessions/a/events?limit=", "limit"},
		{"/sessions/a/events?limit=5&limit=x", "limit"},
		{"/sessions/a/events?after=1&after=2", "after"},
		{"/sessions/a/artifacts?after=", "after"},
		{"/sessions/a/artifacts?limit=", "limit"},
		{"/sessions/a/artifacts?limit=2&limit=3", "limit"},
		{"/sessions/a/artifacts?after=0&limit=1&after=5", "after"},
		{"/approvals/history?limit=", "limit"},
		{"/approvals/history?limit=5&limit=500", "limit"},
		{"/approvals?project=p&project=q", "project"},
		{"/approvals/history?project=p&project=q", "project"},
		{"/approvals/stream?project=p&project=q", "project"},
	} {
		e := c.wantError(http.StatusBadRequest, protocol.CodeInvalid, http.MethodGet, tc.path, nil)
		if !strings.HasPrefix(e.Message, tc.name+":") {
			t.Errorf("GET %s: %q; want a message naming %s", tc.path, e.Message, tc.name)
		}
	}
}

// TestQueryParamsUndecodable: a query value with a malformed %-escape is
// not the value the client meant. url.Values drops such a pair, so it
// read as absent: ?after=%zz on the artifacts route answered the whole
// list instead of a page, ?project=%zz on the inbox every project's
// requests, and on GET /sessions every session, where a value that is no
// project name matches nothing.
func TestQueryParamsUndecodable(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{"project":"web"}`)
	c.must(http.StatusCreated, nil, "POST", "/sessions/b", nil)
	for _, tc := range []struct{ path, name string }{
		{"/sessions/a/events?after=%zz", "after"},
		{"/sessions/a/events?limit=5%", "limit"},
		{"/sessions/a/artifacts?after=%zz", "after"},
		{"/sessions/a/artifacts?limit=%2", "limit"},
		{"/approvals?project=w%zzeb", "project"},
		{"/approvals/history?limit=%zz", "limit"},
		{"/approvals/stream?project=%zz", "project"},
	} {
		e := c.wantError(http.StatusBadRequest, protocol.CodeInvalid, http.MethodGet, tc.path, nil)
		if !strings.HasPrefix(e.Message, tc.name+":") {
			t.Errorf("GET %s: %q; want a message naming %s", tc.path, e.Message, tc.name)
		}
	}
	var list []protocol.Session
	c.must(http.StatusOK, &list, "GET", "/sessions?project=w%zzeb", nil)
	if len(list) != 0 {
		t.Errorf("GET /sessions?project=w%%zzeb = %s; want [] (no project has that name)", ids(list))
	}
	// Another parameter's bad escape is not this one's business.
	c.must(http.StatusOK, &list, "GET", "/sessions?x=%zz&project=web", nil)
	if got := ids(list); got != "a" {
		t.Errorf("GET /sessions?x=%%zz&project=web = %s; want a", got)
	}
	st := c.stream("/sessions/stream?project=%zz")
	defer st.close()
	if ev := st.next(); ev.Event != protocol.SSESnapshotComplete {
		t.Errorf("session stream ?project=%%zz: %s %s; want no session, then snapshot_complete", ev.Event, ev.Data)
	}
}
