package server_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
)

// stored is everything a session has in the store: what a rejected request
// must leave exactly as it was.
func stored(t testing.TB, s *app.App, id string) string {
	t.Helper()
	ctx := context.Background()
	rec, err := s.Store().Session(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := s.Store().Events(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Store().ArtifactsSince(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := s.Store().Commands(ctx, id, 0, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]any{"record": rec, "events": evs, "snapshot": snap, "commands": cmds})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type badInput struct {
	name   string
	body   string
	hdr    []string
	status int
	// field is what the message must name.
	field string
}

func checkBad(t *testing.T, c *client, s *app.App, id, method, path string, cases []badInput) {
	t.Helper()
	for _, tc := range cases {
		before := stored(t, s, id)
		got, e, _ := c.status(method, path, tc.body, tc.hdr...)
		wantCode := protocol.CodeInvalid
		if tc.status == 413 {
			wantCode = protocol.CodeTooLarge
		}
		if got != tc.status || e.Code != wantCode || !strings.Contains(e.Message, tc.field) {
			t.Errorf("%s %s %s: %d %+v; want %d %s naming %q", method, path, tc.name, got, e, tc.status, wantCode, tc.field)
		}
		if after := stored(t, s, id); after != before {
			t.Errorf("%s %s %s: the store changed\nbefore: %s\nafter:  %s", method, path, tc.name, before, after)
		}
	}
}

func TestBadSessionCreate(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{MaxBody: 4096})
	c := newClient(t, s)
	c.create("a")
	big := `{"project":"` + strings.Repeat("x", 5000) + `"}`
	for _, tc := range []struct {
		name, path, body string
		status           int
		field            string
	}{
		{"truncated JSON", "/sessions/x", `{"project":`, 400, "JSON object"},
		{"an array", "/sessions/x", `["web"]`, 400, "JSON object"},
		{"a string", "/sessions/x", `"web"`, 400, "JSON object"},
		{"null", "/sessions/x", `null`, 400, "JSON object"},
		{"trailing garbage", "/sessions/x", `{} {}`, 400, "JSON object"},
		{"invalid UTF-8", "/sessions/x", "{\"project\":\"w\xffb\"}", 400, "UTF-8"},
		{"project a number", "/sessions/x", `{"project":5}`, 400, "project: must be a string"},
		{"project an object", "/sessions/x", `{"project":{"a":1}}`, 400, "project: must be a string"},
		{"project charset", "/sessions/x", `{"project":"a b"}`, 400, "project:"},
		{"project empty", "/sessions/x", `{"project":""}`, 400, "project:"},
		{"project too long", "/sessions/x", `{"project":"` + strings.Repeat("p", 129) + `"}`, 400, "project:"},
		{"id charset", "/sessions/a%20b", "", 400, "session id"},
		{"id unicode", "/sessions/%C3%A9", "", 400, "session id"},
		{"id too long", "/sessions/" + strings.Repeat("x", 129), "", 400, "session id"},
		{"id reserved", "/sessions/stream", "", 400, "reserved"},
		{"exists", "/sessions/a", "", 409, "already exists"},
		{"body too large", "/sessions/x", big, 413, "larger than 4096 bytes"},
	} {
		got, e, _ := c.status("POST", tc.path, tc.body)
		if got != tc.status || !strings.Contains(e.Message, tc.field) {
			t.Errorf("%s: %d %+v; want %d naming %q", tc.name, got, e, tc.status, tc.field)
		}
	}
	list, err := s.ListSessions(context.Background(), "")
	if err != nil || len(list) != 1 {
		t.Fatalf("sessions after rejected creates: %v %v", list, err)
	}
	// Exact key only, and others ignored, like the event decoders.
	var rec protocol.Session
	c.must(http.StatusCreated, &rec, "POST", "/sessions/y", `{"Project":"web","extra":1}`)
	if rec.Project != nil {
		t.Fatalf("case-variant key taken: %+v", rec)
	}
}

func TestBadCommands(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.create("a")
	st := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	defer st.close()
	waitStatus(t, c, "a", protocol.StatusLive)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"prompt","text":"hello"}`)
	checkBad(t, c, s, "a", "POST", "/sessions/a/commands", []badInput{
		{name: "not JSON", body: `prompt`, status: 400, field: "JSON object"},
		{name: "empty", body: ``, status: 400, field: "JSON object"},
		{name: "an array", body: `[{"type":"abort"}]`, status: 400, field: "JSON object"},
		{name: "invalid UTF-8", body: "{\"type\":\"prompt\",\"text\":\"\xc3\x28\"}", status: 400, field: "UTF-8"},
		{name: "no type", body: `{}`, status: 400, field: "type: required"},
		{name: "type a number", body: `{"type":1}`, status: 400, field: "type: must be a string"},
		{name: "unknown type", body: `{"type":"shutdown"}`, status: 400, field: "type: unknown command type"},
		{name: "no text", body: `{"type":"prompt"}`, status: 400, field: "text: required"},
		{name: "empty text", body: `{"type":"prompt","text":""}`, status: 400, field: "text: must not be empty"},
		// Blank is empty, as for the create's prompt: it was stored
		// (202) and handed to the agent, whose model refuses it.
		{name: "blank text", body: `{"type":"prompt","text":" \n\t "}`, status: 400, field: "text: must not be blank"},
		{name: "blank queued text", body: `{"type":"prompt","text":"\u00a0","queue":true}`, status: 400, field: "text: must not be blank"},
		{name: "text a number", body: `{"type":"prompt","text":5}`, status: 400, field: "text: must be a string"},
		{name: "text too long", body: `{"type":"prompt","text":"` + strings.Repeat("x", protocol.MaxTextLen+1) + `"}`, status: 400, field: "text: is 262145 bytes"},
		{name: "requestId charset", body: `{"type":"permission_response","requestId":"r 1","optionId":"o"}`, status: 400, field: "requestId:"},
		{name: "no optionId", body: `{"type":"permission_response","requestId":"r1"}`, status: 400, field: "optionId: required"},
		{name: "bad outcome", body: `{"type":"permission_response","requestId":"r1","outcome":"maybe"}`, status: 400, field: "outcome:"},
		{name: "body too large", body: `{"type":"prompt","text":"` + strings.Repeat("x", protocol.MaxBodyBytes) + `"}`, status: 413, field: "larger than"},
	})
}

func TestBadEvents(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.create("a")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `[{"type":"turn_started","turnId":"t1","source":"user"},{"type":"text_delta","delta":"hi"}]`)
	batch := func(n int, ev string) string { return "[" + strings.TrimSuffix(strings.Repeat(ev+",", n), ",") + "]" }
	checkBad(t, c, s, "a", "POST", "/sessions/a/events", []badInput{
		{name: "not JSON", body: `hello`, status: 400, field: "events[0]: not a JSON object"},
		{name: "truncated array", body: `[{"type":"heartbeat"}`, status: 400, field: "not a JSON array"},
		{name: "empty batch", body: `[]`, status: 400, field: "empty"},
		{name: "null", body: `null`, status: 400, field: "events[0]"},
		{name: "invalid UTF-8", body: "{\"type\":\"text_delta\",\"delta\":\"\xff\"}", status: 400, field: "UTF-8"},
		{name: "no type", body: `{"delta":"x"}`, status: 400, field: "events[0].type: required"},
		{name: "unknown type", body: `{"type":"rm_rf"}`, status: 400, field: "events[0].type: unknown event type"},
		{name: "wrong type", body: `{"type":"text_delta","delta":5}`, status: 400, field: "events[0].delta: must be a string"},
		{name: "missing field", body: `{"type":"tool_call_start","id":"c1"}`, status: 400, field: "events[0].name: required"},
		{name: "id charset", body: `{"type":"tool_call_start","id":"../etc","name":"x"}`, status: 400, field: "events[0].id:"},
		{name: "id too long", body: `{"type":"tool_call_start","id":"` + strings.Repeat("i", 129) + `","name":"x"}`, status: 400, field: "events[0].id:"},
		{name: "bad enum", body: `{"type":"turn_completed","stopReason":"bored"}`, status: 400, field: "events[0].stopReason:"},
		{name: "agentSeq a string", body: `{"type":"heartbeat","agentSeq":"1"}`, status: 400, field: "events[0].agentSeq"},
		{name: "agentSeq zero", body: `{"type":"heartbeat","agentSeq":0}`, status: 400, field: "events[0].agentSeq"},
		{name: "nested field", body: `{"type":"plan_updated","entries":[{"content":"x","status":"nope"}]}`, status: 400, field: "events[0].entries[0].status"},
		// Everything or nothing: the good events before a bad one are not stored.
		{name: "bad last in batch", body: `[{"type":"text_delta","delta":" more"},{"type":"turn_completed","stopReason":"end_turn"},{"type":"nope"}]`, status: 400, field: "events[2].type"},
		{name: "bad Rein-Instance", body: `{"type":"text_delta","delta":"x"}`, hdr: []string{protocol.HeaderInstance, "a/b"}, status: 400, field: protocol.HeaderInstance},
		{name: "text field too long", body: `{"type":"text_delta","delta":"` + strings.Repeat("x", protocol.MaxTextLen+1) + `"}`, status: 400, field: "events[0].delta: is 262145 bytes"},
		{name: "event too large", body: `{"type":"tool_call_start","id":"c","name":"x","input":{"a":"` + strings.Repeat("x", protocol.MaxEventBytes) + `"}}`, status: 413, field: "events[0]: event is"},
		{name: "batch too long", body: batch(protocol.MaxBatchEvents+1, `{"type":"text_delta","delta":"x"}`), status: 413, field: "at most 1000"},
		{name: "body too large", body: batch(40, `{"type":"text_delta","delta":"`+strings.Repeat("x", 30000)+`"}`), status: 413, field: "larger than 1048576 bytes"},
	})
	if got, _, _ := c.status("POST", "/sessions/nope/events", `{"type":"heartbeat"}`); got != 404 {
		t.Fatalf("events for a missing session: %d", got)
	}
}

// Per-session caps refuse growth with a 413 that names the flag, and store
// nothing of the refused batch.
func TestSessionCaps(t *testing.T) {
	t.Parallel()
	t.Run("artifacts", func(t *testing.T) {
		s := start(t, app.Options{MaxArtifactsPerSession: 5})
		c := newClient(t, s)
		c.create("a")
		file := func(n int) string { return fmt.Sprintf(`{"type":"file_changed","path":"f%d","change":"add"}`, n) }
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `[{"type":"turn_started","turnId":"t1","source":"user"},{"type":"user_message","text":"hi"},`+file(1)+`]`)
		checkBad(t, c, s, "a", "POST", "/sessions/a/events", []badInput{
			{name: "past the cap", body: `[` + file(2) + `,` + file(3) + `,` + file(4) + `]`, status: 413, field: "cap of 5 (--max-artifacts-per-session)"},
		})
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `[`+file(2)+`,`+file(3)+`]`)
		checkBad(t, c, s, "a", "POST", "/sessions/a/events", []badInput{
			{name: "at the cap", body: `{"type":"text_delta","delta":"more"}`, status: 413, field: "--max-artifacts-per-session"},
		})
		// Heartbeats store nothing, so a full session still shows it is alive.
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"heartbeat"}`)
		if arts, _ := s.Artifacts(context.Background(), "a"); len(arts) != 5 {
			t.Fatalf("%d artifacts; want 5", len(arts))
		}
	})
	// A turn_started while another turn is open makes two artifacts: the
	// interrupted turn's notice and the new turn. The cap and its reserve
	// (5 more, see TestCapReserveKeepsTheTranscriptTrue) count them, so
	// no batch takes the session past them.
	t.Run("turns that interrupt turns", func(t *testing.T) {
		s := start(t, app.Options{MaxArtifactsPerSession: 5})
		c := newClient(t, s)
		c.create("a")
		var turns []string
		for i := range 6 {
			turns = append(turns, fmt.Sprintf(`{"type":"turn_started","turnId":"t%d","source":"user"}`, i+1))
		}
		got, _, _ := c.status("POST", "/sessions/a/events", "["+strings.Join(turns, ",")+"]")
		if arts, _ := s.Artifacts(context.Background(), "a"); len(arts) > 10 {
			t.Fatalf("the batch was answered %d and the session has %d artifacts; its cap and reserve are 10", got, len(arts))
		}
		if got != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d; want 413", got)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		s := start(t, app.Options{MaxSessionBytes: 2000})
		c := newClient(t, s)
		c.create("a")
		delta := `{"type":"text_delta","delta":"` + strings.Repeat("x", 400) + `"}`
		accepted := 0
		for range 10 {
			got, e, _ := c.status("POST", "/sessions/a/events", delta)
			if got == 413 {
				if !strings.Contains(e.Message, "cap of 2000 (--max-session-bytes)") {
					t.Fatalf("413 message %q", e.Message)
				}
				break
			}
			if got != 202 {
				t.Fatalf("status %d %+v", got, e)
			}
			accepted++
		}
		evs, _ := s.Store().Events(context.Background(), "a")
		var n int
		for _, e := range evs {
			n += len(e.Body)
		}
		if accepted == 0 || accepted == 10 || n > 2000 || len(evs) != accepted {
			t.Fatalf("accepted %d events, stored %d bytes in %d events", accepted, n, len(evs))
		}
		// The cap holds across a restart: the size is folded from the log.
		server.DropState(s.Server, "a")
		checkBad(t, c, s, "a", "POST", "/sessions/a/events", []badInput{{name: "after refold", body: delta, status: 413, field: "--max-session-bytes"}})
	})
}

// checkFold fails unless the stored artifacts are exactly what the stored
// event log folds to.
func checkFold(t testing.TB, s *app.App, id string) {
	t.Helper()
	settle(t, s, id)
	ctx := context.Background()
	log, err := s.Store().Events(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]protocol.Event, len(log))
	for i, le := range log {
		if err := json.Unmarshal(le.Body, &evs[i]); err != nil {
			t.Fatalf("stored event %d does not decode: %v", le.Pos, err)
		}
	}
	want := reducer.Fold(evs).Artifacts()
	got, err := s.Store().Artifacts(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d stored artifacts; the log folds to %d", len(got), len(want))
	}
	for i := range want {
		w, _ := json.Marshal(want[i])
		var a, b any
		_ = json.Unmarshal(w, &a)
		_ = json.Unmarshal(got[i].Body, &b)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("artifact %d stored %s; the log folds to %s", i+1, got[i].Body, w)
		}
	}
}

// fuzzServer is a real server on a real SQLite file, shared by a fuzz
// target's inputs. Its logs are discarded: they cannot go to a *testing.F
// while it fuzzes.
func fuzzServer(f *testing.F) (*app.App, *client) {
	s := start(f, app.Options{Logger: slog.New(slog.DiscardHandler), MaxBody: 64 << 10})
	return s, newClient(f, s)
}

func statusIn(got int, want ...int) bool {
	for _, w := range want {
		if got == w {
			return true
		}
	}
	return false
}

func FuzzPostEvents(f *testing.F) {
	for _, seed := range []string{
		`{"type":"heartbeat"}`,
		`[{"type":"turn_started","turnId":"t1","source":"user"},{"type":"user_message","text":"hi"},{"type":"text_delta","delta":"a"}]`,
		`{"type":"tool_call_start","id":"c1","name":"bash","input":{"cmd":"ls"}}`,
		`{"type":"tool_output_delta","id":"c1","delta":"out","stream":"stdout"}`,
		`{"type":"tool_call_end","id":"c1","status":"completed","exitCode":0}`,
		`{"type":"permission_requested","id":"p1","toolCallId":"c1","title":"ok?","options":[{"id":"y","name":"Yes","kind":"allow_once"}]}`,
		`{"type":"plan_updated","entries":[{"content":"x","status":"pending"}]}`,
		`{"type":"turn_completed","stopReason":"cancelled"}`,
		`{"type":"text_end","id":"b","text":"final"}`,
		`{"type":"agent_exited","code":1}`,
		`{"type":"notice","level":"warning","message":"m","code":"c"}`,
		`[{"type":"text_delta","delta":"x","agentSeq":1},{"type":"text_delta","delta":"x","agentSeq":1}]`,
		`{"type":"text_delta","Delta":"x","ID":"../x"}`,
		`[]`, `[`, `null`, "\xff", `{"type":"nope"}`,
	} {
		f.Add(seed, "")
	}
	f.Add(`{"type":"heartbeat"}`, "i1")
	s, c := fuzzServer(f)
	c.create("f")
	f.Fuzz(func(t *testing.T, body, instance string) {
		c := &client{t: t, base: c.base}
		var hdr []string
		if instance != "" {
			for _, b := range []byte(instance) {
				if b < 0x20 && b != '\t' || b == 0x7f {
					return // not a header value net/http will send
				}
			}
			hdr = []string{protocol.HeaderInstance, instance}
		}
		got, e, _ := c.status("POST", "/sessions/f/events", body, hdr...)
		if !statusIn(got, 202, 400, 409, 413) {
			t.Fatalf("POST events %q: %d %+v", body, got, e)
		}
		if got >= 400 && (e.Code == protocol.CodeInternal || e.Message == "") {
			t.Fatalf("POST events %q: %d %+v", body, got, e)
		}
		checkFold(t, s, "f")
	})
}

func FuzzPostCommands(f *testing.F) {
	for _, seed := range []string{
		`{"type":"prompt","text":"fix it"}`, `{"type":"abort"}`,
		`{"type":"permission_response","requestId":"r1","optionId":"allow_once"}`,
		`{"type":"permission_response","requestId":"r1","outcome":"cancelled"}`,
		`{"type":"prompt","text":"x","Type":"shutdown"}`, `{"type":"shutdown"}`, `{}`, `[]`, "\xff", ``,
	} {
		f.Add(seed)
	}
	s, c := fuzzServer(f)
	c.create("f")
	st := c.stream("/sessions/f/commands", protocol.HeaderInstance, "i1")
	f.Cleanup(st.close)
	// A request to answer: its first answer is stored, and any answer
	// after it (or to a request never asked, or with an option it does
	// not offer) is refused, with nothing stored.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/f/events", []any{
		ev("permission_requested", "id", "r1", "title", "ok?", "options", []any{map[string]any{"id": "allow_once", "name": "Allow", "kind": "allow_once"}}),
	}, protocol.HeaderInstance, "i1")
	var last int64
	f.Fuzz(func(t *testing.T, body string) {
		c := &client{t: t, base: c.base}
		got, e, _ := c.status("POST", "/sessions/f/commands", body)
		if !statusIn(got, 202, 400, 404, 409, 413) {
			t.Fatalf("POST commands %q: %d %+v", body, got, e)
		}
		if got >= 400 && (e.Code == protocol.CodeInternal || e.Message == "") {
			t.Fatalf("POST commands %q: %d %+v", body, got, e)
		}
		cmds, err := s.Store().Commands(context.Background(), "f", 0, math.MaxInt64)
		if err != nil {
			t.Fatal(err)
		}
		n := int64(len(cmds))
		if got == 202 && n != last+1 || got != 202 && n != last {
			t.Fatalf("POST commands %q: %d, and %d commands stored after %d", body, got, n, last)
		}
		last = n
		for _, sc := range cmds {
			var cmd protocol.Command
			if err := json.Unmarshal(sc.Body, &cmd); err != nil || cmd.Type == protocol.CommandShutdown {
				t.Fatalf("stored command %s: %v", sc.Body, err)
			}
		}
	})
}

func FuzzCreateSession(f *testing.F) {
	for _, seed := range []string{``, `{}`, `{"project":"web"}`, `{"project":null}`, `{"project":5}`, `{"project":"a b"}`, `[]`, "\xff", `{"Project":"x"}`} {
		f.Add("s", seed)
	}
	f.Add("stream", "")
	f.Add("a%2Fb", "")
	s, c := fuzzServer(f)
	n := 0
	f.Fuzz(func(t *testing.T, id, body string) {
		c := &client{t: t, base: c.base}
		n++
		if len(id) > 1000 {
			id = id[:1000]
		}
		// Escaped, any id reaches the server intact; the prefix keeps ids
		// from colliding with earlier inputs.
		path := "/sessions/" + url.PathEscape(fmt.Sprint(n)+"-"+id)
		before, _ := s.ListSessions(context.Background(), "")
		got, e, _ := c.status("POST", path, body)
		if !statusIn(got, 201, 400, 409, 413) {
			t.Fatalf("POST %s %q: %d %+v", path, body, got, e)
		}
		after, _ := s.ListSessions(context.Background(), "")
		if created := len(after) - len(before); got == 201 && created != 1 || got != 201 && created != 0 {
			t.Fatalf("POST %s %q: %d, and %d sessions created", path, body, got, created)
		}
	})
}

// A number beyond a 64-bit float in a free-form value (input, result,
// content, capabilities, locations) is valid JSON, but no Go reader takes
// it: accepted, a permission request with one kept the server from
// starting again ("load approvals ... cannot unmarshal number 1e999"),
// for every session, and broke the Go client on the session's artifacts
// and the inbox. It is refused like any bad value, naming the field, and
// the server still starts on the database afterwards.
func TestOutOfRangeNumberRefused(t *testing.T) {
	t.Parallel()
	db := t.TempDir() + "/rein.db"
	s := start(t, app.Options{DBPath: db})
	c := newClient(t, s)
	c.create("a")
	checkBad(t, c, s, "a", "POST", "/sessions/a/events", []badInput{
		{name: "permission input", body: `{"type":"permission_requested","id":"p1","title":"t","input":{"x":[1,1e999]},"options":[{"id":"o","name":"n","kind":"allow_once"}]}`, status: 400, field: "events[0].input: holds the number 1e999"},
		{name: "tool result in a batch", body: `[{"type":"tool_call_start","id":"c1","name":"x"},{"type":"tool_call_end","id":"c1","status":"completed","result":-1E400}]`, status: 400, field: "events[1].result: holds the number -1E400"},
		{name: "locations", body: `{"type":"tool_call_update","id":"c1","locations":[{"line":` + strings.Repeat("9", 400) + `}]}`, status: 400, field: "events[0].locations: holds the number 9999"},
	})
	// In range, tiny and negative zero are numbers a float holds.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"permission_requested","id":"p2","title":"t","input":{"x":[1.7e308,1e-400,-0]},"options":[{"id":"o","name":"n","kind":"allow_once"}]}`)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := start(t, app.Options{DBPath: db})
	var inbox []protocol.Approval
	newClient(t, s2).must(http.StatusOK, &inbox, "GET", "/approvals", nil)
	if len(inbox) != 1 || inbox[0].RequestID != "p2" {
		t.Fatalf("inbox after restart: %+v", inbox)
	}
}

// A free-form value nested as deep as an event may be was accepted, and
// then every document the server wraps it in (the inbox, the event log
// page, an artifact page) nested past encoding/json's limit: no Go client
// could read them, and the inbox is every session's. One level past
// protocol.MaxValueDepth is refused naming the field; at the limit, every
// one of those documents decodes.
func TestDeepValueRefused(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.create("a")
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	permission := func(input string) string {
		return `{"type":"permission_requested","id":"p1","title":"t","input":` + input + `,"options":[{"id":"o","name":"n","kind":"allow_once"}]}`
	}
	checkBad(t, c, s, "a", "POST", "/sessions/a/events", []badInput{
		// 9,999 levels: the event itself nests 10,000, encoding/json's limit.
		{name: "input nested as deep as an event may", body: permission(nest(10000 - 1)), status: 400, field: "events[0].input: nests deeper than"},
		{name: "one level over", body: permission(nest(protocol.MaxValueDepth + 1)), status: 400, field: "events[0].input: nests deeper than"},
	})
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permission(nest(protocol.MaxValueDepth)))
	for _, path := range []string{"/approvals", "/sessions/a/events", "/sessions/a/artifacts", "/sessions/a/artifacts?limit=10"} {
		var v any
		c.must(http.StatusOK, &v, "GET", path, nil)
	}
}

// The initial prompt is held to a prompt command's limit: a longer one
// was stored as command 1 (201), though the same text sent as a command
// is 400, and encoded past protocol.MaxCommandBytes, which agentd's
// command stream reads at most, so the sandbox could never take it, nor
// any command after it, on any reconnection.
func TestCreatePromptTooLong(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	long := `{"prompt":"` + strings.Repeat("<", protocol.MaxTextLen+1) + `"}`
	got, e, _ := c.status("POST", "/sessions/a", long)
	if want := fmt.Sprintf("prompt: is %d bytes; at most %d are allowed", protocol.MaxTextLen+1, protocol.MaxTextLen); got != 400 || e.Code != protocol.CodeInvalid || e.Message != want {
		t.Fatalf("create with a long prompt: %d %+v; want 400 %q", got, e, want)
	}
	if got, _, _ := c.status("GET", "/sessions/a", ""); got != 404 {
		t.Fatalf("a refused create made the session: GET %d", got)
	}
	if _, err := s.CreateSessionWithPrompt(context.Background(), "a", "", strings.Repeat("x", protocol.MaxTextLen+1)); protocol.CodeOf(err) != protocol.CodeInvalid {
		t.Fatalf("Go API create with a long prompt: %v", err)
	}

	// The longest prompt, of the character JSON writes longest, reaches
	// the sandbox within what agentd reads.
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{"prompt":"`+strings.Repeat("<", protocol.MaxTextLen)+`"}`)
	st := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	defer st.close()
	if ev := st.next(); ev.ID != "1" || len(ev.Data) > protocol.MaxCommandBytes {
		t.Fatalf("command 1: id %s, %d bytes; want id 1 within %d", ev.ID, len(ev.Data), protocol.MaxCommandBytes)
	}
}

// A database written before the decoder refused numbers beyond a float
// may hold one in a permission's input. The inbox is derived state: the
// server starts without that request in it, rather than not at all for
// every session.
func TestStartsWithUndecodableStoredArtifact(t *testing.T) {
	t.Parallel()
	db := t.TempDir() + "/rein.db"
	s := start(t, app.Options{DBPath: db})
	c := newClient(t, s)
	c.create("a")
	c.create("b")
	perm := func(id, input string) string {
		return `{"type":"permission_requested","id":"` + id + `","title":"t","input":` + input + `,"options":[{"id":"o","name":"n","kind":"allow_once"}]}`
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", perm("p1", `{"x":1e308}`))
	c.must(http.StatusAccepted, nil, "POST", "/sessions/b/events", perm("p2", `{"x":1}`))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	res, err := raw.Exec(`UPDATE artifact_bodies SET body = replace(body, '1e308', '1e999') WHERE session_id = 'a' AND instr(body, '1e308') > 0`)
	if err != nil {
		t.Fatalf("store an old value: %v", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("store an old value: %d rows", n)
	}
	raw.Close()

	s = start(t, app.Options{DBPath: db})
	c = newClient(t, s)
	var inbox []protocol.Approval
	c.must(http.StatusOK, &inbox, "GET", "/approvals", nil)
	if len(inbox) != 1 || inbox[0].RequestID != "p2" {
		t.Fatalf("inbox: %+v; want b's request", inbox)
	}
	// The session's record, log and artifacts are served as stored.
	c.must(http.StatusOK, nil, "GET", "/sessions/a", nil)
	if _, b := c.do("GET", "/sessions/a/artifacts", nil); !strings.Contains(string(b), "1e999") {
		t.Fatalf("artifacts of a: %s", b)
	}
}

// A summary holding NUL (U+0000, "\u0000" in a prompt's or an agent's
// title's JSON) is stored and sent with U+FFFD in its place, on either
// backend: PostgreSQL's text type cannot store NUL, and the session row
// holding it failed every commit of its batch (503 for ever, the session
// taking nothing more, the other sessions of its group commits failed
// with it).
func TestSummaryWithNUL(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/u", nil)
	c.must(http.StatusCreated, nil, "POST", "/sessions/v", nil)
	feed := c.stream("/sessions/stream")
	for feed.next().Event != protocol.SSESnapshotComplete {
	}
	for i, step := range []struct {
		event map[string]any
		want  string
	}{
		{ev("user_message", "text", "fix\x00 it\nplease"), "fix\uFFFD it"},
		{ev("session_info", "title", "\x00title\x00"), "\uFFFDtitle\uFFFD"},
	} {
		step.event["agentSeq"] = i + 1
		c.must(http.StatusAccepted, nil, "POST", "/sessions/u/events", step.event, protocol.HeaderInstance, "i1")
		var rec protocol.Session
		c.must(http.StatusOK, &rec, "GET", "/sessions/u", nil)
		if rec.Summary == nil || *rec.Summary != step.want {
			t.Fatalf("after %v: summary %q; want %q", step.event, deref(rec.Summary), step.want)
		}
		for {
			e := feed.next()
			var u protocol.SessionUpdated
			if e.Event != protocol.SSESessionUpdated || json.Unmarshal([]byte(e.Data), &u) != nil || u.Fields.Summary == nil {
				continue
			}
			if *u.Fields.Summary != step.want {
				t.Fatalf("session stream: summary %q; want %q, as stored", *u.Fields.Summary, step.want)
			}
			break
		}
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/v/events", `{"type":"heartbeat"}`)
}

func deref(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}
