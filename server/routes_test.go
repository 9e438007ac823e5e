package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/pgtest"
)

func TestSessionRoutes(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)

	var a, b, d protocol.Session
	c.must(http.StatusCreated, &a, "POST", "/sessions/a", nil)
	if a.ID != "a" || a.Status != protocol.StatusBootstrapping || a.Project != nil || a.Summary != nil || a.LastHeartbeat != nil || a.CreatedAt == 0 {
		t.Fatalf("created %+v", a)
	}
	c.must(http.StatusCreated, &b, "POST", "/sessions/b", `{"project":"web"}`)
	if b.Project == nil || *b.Project != "web" {
		t.Fatalf("project not stored: %+v", b)
	}
	c.must(http.StatusCreated, &d, "POST", "/sessions/c.d_e-1", `{}`)

	// The record's JSON has every field, null when unset.
	_, raw := c.do("GET", "/sessions/a", nil)
	for _, k := range []string{`"summary":null`, `"project":null`, `"lastHeartbeat":null`} {
		if !strings.Contains(string(raw), k) {
			t.Errorf("GET /sessions/a = %s; missing %s", raw, k)
		}
	}

	c.wantError(http.StatusConflict, protocol.CodeConflict, "POST", "/sessions/a", nil)
	c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "POST", "/sessions/stream", nil)
	c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "POST", "/sessions/a%20b", nil)
	c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "POST", "/sessions/"+strings.Repeat("x", 129), nil)
	c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "POST", "/sessions/x", `{"project":`)
	c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "POST", "/sessions/x", `{"project":"a b"}`)
	c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "GET", "/sessions/a%2Fb", nil)
	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", "/sessions/nope", nil)
	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", "/nope", nil)

	var list []protocol.Session
	c.must(http.StatusOK, &list, "GET", "/sessions", nil)
	if got := ids(list); got != "a b c.d_e-1" {
		t.Fatalf("GET /sessions = %s; want oldest first", got)
	}
	c.must(http.StatusOK, &list, "GET", "/sessions?project=web", nil)
	if got := ids(list); got != "b" {
		t.Fatalf("GET /sessions?project=web = %s", got)
	}
	c.must(http.StatusOK, &list, "GET", "/sessions?project=none", nil)
	if list == nil || len(list) != 0 {
		t.Fatalf("GET /sessions?project=none = %v; want []", list)
	}

	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil)
	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", "/sessions/a", nil)
	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "DELETE", "/sessions/a", nil)
	for _, p := range []string{"/sessions/a/artifacts", "/sessions/a/stream", "/sessions/a/commands"} {
		c.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", p, nil)
	}
	// Deleted ids can be reused.
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)

	var h map[string]string
	c.must(http.StatusOK, &h, "GET", "/healthz", nil)
	if h["status"] != "ok" {
		t.Fatalf("healthz = %v", h)
	}
}

// A ?project= on GET /sessions that is no project name matches nothing
// (docs/PROTOCOL.md), on either backend: a value PostgreSQL cannot take
// as text (a NUL, bytes that are not UTF-8) must not reach the database,
// whose refusal would be a 503 the client retries for ever.
func TestListSessionsByMalformedProject(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			opts := app.Options{}
			if backend == "postgres" {
				opts.DBPath = pgtest.NewDatabase(t)
			}
			s := start(t, opts)
			c := newClient(t, s)
			c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{"project":"web"}`)
			for _, p := range []string{"%00", "web%00", "%FF", "w%C3%28b", "a%20b", strings.Repeat("x", 129)} {
				var list []protocol.Session
				c.must(http.StatusOK, &list, "GET", "/sessions?project="+p, nil)
				if list == nil || len(list) != 0 {
					t.Errorf("GET /sessions?project=%s = %v; want []", p, list)
				}
			}
			var list []protocol.Session
			c.must(http.StatusOK, &list, "GET", "/sessions?project=web", nil)
			if got := ids(list); got != "a" {
				t.Fatalf("GET /sessions?project=web = %s; want a", got)
			}
		})
	}
}

func ids(list []protocol.Session) string {
	var out []string
	for _, s := range list {
		out = append(out, s.ID)
	}
	return strings.Join(out, " ")
}

func TestGoAPI(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	ctx := context.Background()
	if s.Port() == 0 || !strings.HasPrefix(s.URL(), "http://127.0.0.1:") || s.Store() == nil {
		t.Fatalf("Port %d URL %s", s.Port(), s.URL())
	}
	if _, err := s.CreateSession(ctx, "x", "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSession(ctx, "x", ""); protocol.CodeOf(err) != protocol.CodeConflict {
		t.Fatalf("duplicate CreateSession: %v", err)
	}
	if _, err := s.CreateSession(ctx, "stream", ""); protocol.CodeOf(err) != protocol.CodeInvalid {
		t.Fatalf("CreateSession(stream): %v", err)
	}
	got, err := s.GetSession(ctx, "x")
	if err != nil || *got.Project != "p" {
		t.Fatalf("GetSession = %+v, %v", got, err)
	}
	list, err := s.ListSessions(ctx, "p")
	if err != nil || len(list) != 1 {
		t.Fatalf("ListSessions = %v, %v", list, err)
	}
}

// The zero Options are usable: in-memory database, free port.
func TestZeroOptions(t *testing.T) {
	t.Parallel()
	s, err := app.New(app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	var list []protocol.Session
	c.must(http.StatusOK, &list, "GET", "/sessions", nil)
	if len(list) != 1 {
		t.Fatalf("in-memory list = %v", list)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{MaxBody: 64 << 10})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)

	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "POST", "/sessions/nope/events", ev("notice", "level", "info", "message", "m"))
	e := c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "POST", "/sessions/a/events", []any{
		ev("text_delta", "delta", "ok"), ev("tool_call_start", "id", "t1"),
	})
	if !strings.Contains(e.Message, "events[1]") || !strings.Contains(e.Message, "name") {
		t.Fatalf("400 message %q does not name the index and field", e.Message)
	}
	c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "POST", "/sessions/a/events", `{"type":`)
	c.wantError(http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, "POST", "/sessions/a/events",
		ev("text_delta", "delta", strings.Repeat("x", 65<<10)))
	var arts []json.RawMessage
	c.must(http.StatusOK, &arts, "GET", "/sessions/a/artifacts", nil)
	if len(arts) != 0 {
		t.Fatalf("a refused batch stored artifacts: %s", arts)
	}

	var res protocol.EventsAccepted
	batch := []any{
		ev("turn_started", "turnId", "t1", "source", "user", "agentSeq", 1),
		ev("user_message", "text", "fix the bug\nplease", "agentSeq", 2),
		ev("text_delta", "delta", "hel", "agentSeq", 3),
		ev("text_delta", "delta", "lo", "agentSeq", 4),
	}
	c.must(http.StatusAccepted, &res, "POST", "/sessions/a/events", batch, protocol.HeaderInstance, "i1")
	if res != (protocol.EventsAccepted{Accepted: 4}) {
		t.Fatalf("first batch: %+v", res)
	}
	// A retry of the same batch is all duplicates; one overlapping it is
	// partly new. Another instance has its own sequence.
	c.must(http.StatusAccepted, &res, "POST", "/sessions/a/events", batch, protocol.HeaderInstance, "i1")
	if res != (protocol.EventsAccepted{Duplicates: 4}) {
		t.Fatalf("retry: %+v", res)
	}
	c.must(http.StatusAccepted, &res, "POST", "/sessions/a/events", []any{
		ev("text_delta", "delta", "lo", "agentSeq", 4), ev("text_delta", "delta", "!", "agentSeq", 5),
	}, protocol.HeaderInstance, "i1")
	if res != (protocol.EventsAccepted{Accepted: 1, Duplicates: 1}) {
		t.Fatalf("overlap: %+v", res)
	}
	c.must(http.StatusAccepted, &res, "POST", "/sessions/a/events", ev("text_delta", "delta", "?", "agentSeq", 1), protocol.HeaderInstance, "i2")
	// Events without agentSeq are never duplicates.
	c.must(http.StatusAccepted, &res, "POST", "/sessions/a/events", ev("text_delta", "delta", "."))
	c.must(http.StatusAccepted, &res, "POST", "/sessions/a/events", ev("text_delta", "delta", "."))
	if res.Accepted != 1 {
		t.Fatalf("event without agentSeq: %+v", res)
	}

	var arts2 []protocol.Artifact
	c.must(http.StatusOK, &arts2, "GET", "/sessions/a/artifacts", nil)
	if len(arts2) != 3 || arts2[2].String("text") != "hello!?.." {
		t.Fatalf("artifacts = %+v", arts2)
	}
	for i, a := range arts2 {
		if a.Seq != int64(i+1) {
			t.Fatalf("artifacts not ordered by seq: %+v", arts2)
		}
	}
	var rec protocol.Session
	c.must(http.StatusOK, &rec, "GET", "/sessions/a", nil)
	// No sandbox holds the command stream: turn_started leaves the
	// session bootstrapping, not live.
	if rec.Summary == nil || *rec.Summary != "fix the bug" || rec.Status != protocol.StatusBootstrapping {
		t.Fatalf("session after events: %+v", rec)
	}

	// A heartbeat sets lastHeartbeat and nothing else.
	c.must(http.StatusAccepted, &res, "POST", "/sessions/a/events", ev("heartbeat", "agentSeq", 100), protocol.HeaderInstance, "i1")
	var after protocol.Session
	c.must(http.StatusOK, &after, "GET", "/sessions/a", nil)
	if after.LastHeartbeat == nil || after.Status != rec.Status || *after.Summary != *rec.Summary {
		t.Fatalf("after heartbeat: %+v", after)
	}
	var arts3 []json.RawMessage
	c.must(http.StatusOK, &arts3, "GET", "/sessions/a/artifacts", nil)
	if len(arts3) != 3 {
		t.Fatalf("heartbeat made an artifact: %s", arts3)
	}
	evs, err := s.Store().Events(context.Background(), "a")
	if err != nil || len(evs) != 8 {
		t.Fatalf("event log has %d entries, %v; want 8 (no heartbeat)", len(evs), err)
	}
}

func TestCommands(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	prompt := `{"type":"prompt","text":"fix the bug"}`

	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "POST", "/sessions/nope/commands", prompt)
	c.wantError(http.StatusConflict, protocol.CodeNoSandbox, "POST", "/sessions/a/commands", prompt)
	for _, bad := range []string{`{"type":"prompt","text":""}`, `{"type":"dance"}`, `{"type":"permission_response"}`, `nope`} {
		c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "POST", "/sessions/a/commands", bad)
	}

	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	var rec protocol.Session
	c.must(http.StatusOK, &rec, "GET", "/sessions/a", nil)
	if rec.Status != protocol.StatusLive {
		t.Fatalf("status with a sandbox: %s; want live", rec.Status)
	}
	// A permission_response answers a request the agent asked (one it
	// never asked is refused: see answers_test.go).
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("permission_requested", "id", "r1", "title", "ok?", "options", []any{map[string]any{"id": "allow_once", "name": "Allow", "kind": "allow_once"}}),
	}, protocol.HeaderInstance, "i1")
	var acc protocol.CommandAccepted
	for i, body := range []string{prompt, `{"type":"abort"}`, `{"type":"permission_response","requestId":"r1","optionId":"allow_once"}`} {
		c.must(http.StatusAccepted, &acc, "POST", "/sessions/a/commands", body)
		if acc.ID != int64(i+1) {
			t.Fatalf("command %d got id %d", i+1, acc.ID)
		}
		got := cmds.next()
		var cmd protocol.Command
		if err := json.Unmarshal([]byte(got.Data), &cmd); err != nil {
			t.Fatal(err)
		}
		if got.Event != protocol.SSECommand || got.ID != itoa(acc.ID) || cmd.ID != acc.ID {
			t.Fatalf("command event %+v; want id %d", got, acc.ID)
		}
	}

	// The sandbox reconnects having seen only command 1: 2 and 3 come
	// again, then new ones.
	cmds.close()
	re := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1", "Last-Event-ID", "1")
	for _, want := range []string{"2", "3"} {
		if got := re.next(); got.ID != want {
			t.Fatalf("redelivered id %s; want %s", got.ID, want)
		}
	}
	c.must(http.StatusAccepted, &acc, "POST", "/sessions/a/commands", `{"type":"abort"}`)
	if got := re.next(); got.ID != "4" {
		t.Fatalf("live after redelivery: id %s; want 4", got.ID)
	}

	// The same instance reconnecting says what it received, not what its
	// agent took: nothing is acknowledged yet.
	if rec = c.session("a"); rec.AckedCommandID != 0 || rec.PendingCommands != 4 {
		t.Fatalf("after Last-Event-ID 1: ackedCommandId %d, pendingCommands %d; want 0, 4", rec.AckedCommandID, rec.PendingCommands)
	}

	// Without Last-Event-ID the commands not acknowledged come again,
	// then new ones; the newer connection ends the older one.
	fresh := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	re.expectEnd()
	for _, want := range []string{"1", "2", "3", "4"} {
		if got := fresh.next(); got.ID != want {
			t.Fatalf("fresh stream redelivered id %s; want %s", got.ID, want)
		}
	}
	c.must(http.StatusAccepted, &acc, "POST", "/sessions/a/commands", `{"type":"abort"}`)
	if got := fresh.next(); got.ID != "5" {
		t.Fatalf("fresh stream got id %s; want 5", got.ID)
	}

	// The sandbox acknowledges with the cursor header of an event post
	// (a heartbeat here); a malformed cursor is refused naming the header.
	hb := `[{"type":"heartbeat"}]`
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", hb, protocol.HeaderInstance, "i1", protocol.HeaderCommandCursor, "4")
	if rec = c.session("a"); rec.AckedCommandID != 4 || rec.PendingCommands != 1 {
		t.Fatalf("after cursor 4: ackedCommandId %d, pendingCommands %d; want 4, 1", rec.AckedCommandID, rec.PendingCommands)
	}
	c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "POST", "/sessions/a/events", hb, protocol.HeaderInstance, "i1", protocol.HeaderCommandCursor, "x")
	// A cursor past the last command says the database went back under
	// the sandbox: the next command is numbered after it.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", hb, protocol.HeaderInstance, "i1", protocol.HeaderCommandCursor, "99")
	if rec = c.session("a"); rec.AckedCommandID != 99 || rec.PendingCommands != 0 {
		t.Fatalf("after cursor 99: ackedCommandId %d, pendingCommands %d; want 99, 0", rec.AckedCommandID, rec.PendingCommands)
	}
	c.must(http.StatusAccepted, &acc, "POST", "/sessions/a/commands", `{"type":"abort"}`)
	if got := fresh.next(); acc.ID != 100 || got.ID != "100" {
		t.Fatalf("after cursor 99: command %d streamed as %s; want 100", acc.ID, got.ID)
	}

	// Closing the command stream disconnects the session.
	ss := c.stream("/sessions/stream")
	for ss.next().Event != protocol.SSESnapshotComplete {
	}
	fresh.close()
	up := ss.next()
	if up.Event != protocol.SSESessionUpdated || !strings.Contains(up.Data, `"status":"disconnected"`) {
		t.Fatalf("after the stream closed: %+v", up)
	}
	c.wantError(http.StatusConflict, protocol.CodeNoSandbox, "POST", "/sessions/a/commands", prompt)
}

func TestSupersededSandbox(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	note := ev("notice", "level", "info", "message", "m")

	// Before any stream, any instance may post (agentd posts before its
	// stream connects).
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", note, protocol.HeaderInstance, "old")
	oldStream := c.stream("/sessions/a/commands", protocol.HeaderInstance, "old")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", note, protocol.HeaderInstance, "old")
	newStream := c.stream("/sessions/a/commands", protocol.HeaderInstance, "new")
	oldStream.expectEnd()

	c.wantError(http.StatusConflict, protocol.CodeSuperseded, "POST", "/sessions/a/events", note, protocol.HeaderInstance, "old")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", note, protocol.HeaderInstance, "new")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", note)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", note, protocol.HeaderInstance, "never-streamed")

	// The old closed stream's release must not disconnect the session the
	// new one holds, and commands still reach the new one.
	var acc protocol.CommandAccepted
	c.must(http.StatusAccepted, &acc, "POST", "/sessions/a/commands", `{"type":"abort"}`)
	if got := newStream.next(); got.ID != itoa(acc.ID) {
		t.Fatalf("new stream got %+v", got)
	}
	var rec protocol.Session
	c.must(http.StatusOK, &rec, "GET", "/sessions/a", nil)
	if rec.Status != protocol.StatusLive {
		t.Fatalf("status %s; want live", rec.Status)
	}

	// The superseded instance may not come back and steal the stream: its
	// reconnect is refused too, and the new one keeps it.
	c.wantError(http.StatusConflict, protocol.CodeSuperseded, "GET", "/sessions/a/commands", nil, protocol.HeaderInstance, "old")
	c.must(http.StatusAccepted, &acc, "POST", "/sessions/a/commands", `{"type":"abort"}`)
	if got := newStream.next(); got.ID != itoa(acc.ID) {
		t.Fatalf("after the refused reconnect the new stream got %+v", got)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", note, protocol.HeaderInstance, "new")
	newStream.close()
}

// TestHeadOpensNoStream: HEAD on a stream route (Go's mux serves it with
// the GET route) is refused and opens nothing: on the command stream it
// would have taken the stream over from the agentd holding it, which then
// stops for good.
func TestHeadOpensNoStream(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	held := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	for _, path := range []string{"/sessions/a/commands", "/sessions/a/stream", "/sessions/stream", "/approvals/stream"} {
		req, _ := http.NewRequest(http.MethodHead, c.base+path, nil)
		req.Header.Set(protocol.HeaderInstance, "i2")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("HEAD %s: %d; want 400", path, resp.StatusCode)
		}
	}
	var acc protocol.CommandAccepted
	c.must(http.StatusAccepted, &acc, "POST", "/sessions/a/commands", `{"type":"abort"}`)
	if got := held.next(); got.ID != itoa(acc.ID) {
		t.Fatalf("the stream held before the HEAD got %+v; want command %d", got, acc.ID)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", ev("notice", "level", "info", "message", "m"), protocol.HeaderInstance, "i1")
}

func TestDeleteEndsStreams(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	arts := c.stream("/sessions/a/stream")
	newModel(t).readSnapshot(arts)
	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	ss := c.stream("/sessions/stream")
	for ss.next().Event != protocol.SSESnapshotComplete {
	}
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil)
	arts.expectEnd()
	cmds.expectEnd()
	if got := ss.next(); got.Event != protocol.SSESessionRemoved || got.Data != `{"id":"a"}` {
		t.Fatalf("session stream got %+v; want session_removed", got)
	}
	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "POST", "/sessions/a/events", ev("heartbeat"))
}

// Concurrent posters are committed in groups; every event is stored once,
// revisions stay dense, and the stored artifacts equal a fold of the log.
func TestConcurrentIngest(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	const sessions, posters, posts = 3, 4, 25
	for i := range sessions {
		c.must(http.StatusCreated, nil, "POST", fmt.Sprintf("/sessions/s%d", i), nil)
	}
	var wg sync.WaitGroup
	for i := range sessions {
		for p := range posters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				inst := fmt.Sprintf("inst%d", p)
				for n := 1; n <= posts; n++ {
					body := []any{
						ev("tool_call_start", "id", fmt.Sprintf("%s-%d", inst, n), "name", "sh", "agentSeq", 2*n-1),
						ev("tool_output_delta", "id", fmt.Sprintf("%s-%d", inst, n), "delta", "out", "agentSeq", 2*n),
					}
					status, b := c.do("POST", fmt.Sprintf("/sessions/s%d/events", i), body, protocol.HeaderInstance, inst)
					if status != http.StatusAccepted {
						t.Errorf("post: %d %s", status, b)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	ctx := context.Background()
	for i := range sessions {
		id := fmt.Sprintf("s%d", i)
		log, err := s.Store().Events(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(log) != posters*posts*2 {
			t.Fatalf("%s: %d events stored; want %d", id, len(log), posters*posts*2)
		}
		evs := make([]protocol.Event, len(log))
		for j, le := range log {
			if le.Pos != int64(j+1) {
				t.Fatalf("%s: event %d has pos %d", id, j, le.Pos)
			}
			if err := json.Unmarshal(le.Body, &evs[j]); err != nil {
				t.Fatal(err)
			}
		}
		folded := reducer.Fold(evs).Artifacts()
		stored, err := s.Artifacts(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var want []json.RawMessage
		for _, a := range folded {
			b, _ := json.Marshal(a)
			want = append(want, b)
		}
		if fmt.Sprint(normalize(t, want)) != fmt.Sprint(normalize(t, stored)) {
			t.Fatalf("%s: stored artifacts differ from a fold of the log", id)
		}
	}
}
