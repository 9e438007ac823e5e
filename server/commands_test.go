package server_test

import (
	"context"
	"encoding/json"
	"github.com/rein-ai/rein/server/app"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// session gets a session record.
func (c *client) session(id string) protocol.Session {
	c.t.Helper()
	var rec protocol.Session
	c.must(http.StatusOK, &rec, "GET", "/sessions/"+id, nil)
	return rec
}

// artifactsOf returns a session's artifacts as generic maps.
func (c *client) artifactsOf(id string) []map[string]any {
	c.t.Helper()
	var list []map[string]any
	c.must(http.StatusOK, &list, "GET", "/sessions/"+id+"/artifacts", nil)
	return list
}

// wantCommand reads the next command from a command stream and checks it.
func wantCommand(t *testing.T, s *sseStream, id int64, text string) {
	t.Helper()
	got := s.next()
	var cmd protocol.Command
	if err := json.Unmarshal([]byte(got.Data), &cmd); err != nil {
		t.Fatalf("command %q: %v", got.Data, err)
	}
	if got.Event != protocol.SSECommand || got.ID != itoa(id) || cmd.ID != id || cmd.Type != protocol.CommandPrompt || cmd.Text != text {
		t.Fatalf("command event %+v; want prompt %d %q", got, id, text)
	}
	if strings.Contains(got.Data, `"queue"`) {
		t.Errorf("streamed command %s carries the client's queue flag", got.Data)
	}
}

// wantNext checks a stream has nothing more to give: a prompt sent now,
// which gets id, is its next event.
func wantNext(t *testing.T, c *client, s *sseStream, id int64) {
	t.Helper()
	var acc protocol.CommandAccepted
	c.must(http.StatusAccepted, &acc, "POST", "/sessions/a/commands", `{"type":"prompt","text":"next"}`)
	if acc.ID != id {
		t.Fatalf("next command got id %d; want %d", acc.ID, id)
	}
	wantCommand(t, s, id, "next")
}

// TestInitialPrompt: a prompt given at creation is command 1, pending
// until the first sandbox connects, delivered to it once, and acknowledged
// by its cursor; the next connection does not get it again.
func TestInitialPrompt(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	var created protocol.CreatedSession
	c.must(http.StatusCreated, &created, "POST", "/sessions/a", `{"project":"p","prompt":"fix the test"}`)
	if created.PendingCommands != 1 || created.AckedCommandID != 0 || created.Status != protocol.StatusBootstrapping {
		t.Fatalf("created %+v; want bootstrapping with 1 pending command", created.Session)
	}
	if rec := c.session("a"); rec.PendingCommands != 1 {
		t.Fatalf("GET after create: pendingCommands %d; want 1", rec.PendingCommands)
	}

	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	wantCommand(t, cmds, 1, "fix the test")
	wantNext(t, c, cmds, 2)

	// The agent took both: the cursor says so.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"heartbeat"}`, protocol.HeaderInstance, "i1", protocol.HeaderCommandCursor, "2")
	if rec := c.session("a"); rec.AckedCommandID != 2 || rec.PendingCommands != 0 {
		t.Fatalf("after cursor 2: %+v; want acked 2, none pending", rec)
	}
	cmds.close()
	again := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	wantNext(t, c, again, 3)
}

// TestQueuedPrompt: without a sandbox a prompt gets 409 unless it asks to
// be queued; a queued one is delivered once when a sandbox connects.
func TestQueuedPrompt(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	if e := c.wantError(http.StatusConflict, protocol.CodeNoSandbox, "POST", "/sessions/a/commands", `{"type":"prompt","text":"hi"}`); !strings.Contains(e.Message, `"queue": true`) {
		t.Errorf("a prompt's no_sandbox %q does not say how to queue it", e.Message)
	}
	c.wantError(http.StatusConflict, protocol.CodeNoSandbox, "POST", "/sessions/a/commands", `{"type":"prompt","text":"hi","queue":false}`)
	// Only a prompt may be queued: queue on an abort is not its field, and
	// its refusal does not offer it.
	if e := c.wantError(http.StatusConflict, protocol.CodeNoSandbox, "POST", "/sessions/a/commands", `{"type":"abort","queue":true}`); strings.Contains(e.Message, "queue") || !strings.Contains(e.Message, "abort") {
		t.Errorf("an abort's no_sandbox %q: want it to name the abort and not offer queue", e.Message)
	}
	e := c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "POST", "/sessions/a/commands", `{"type":"prompt","text":"hi","queue":"yes"}`)
	if !strings.Contains(e.Message, "queue") {
		t.Errorf("bad queue: message %q does not name the field", e.Message)
	}

	ss := c.stream("/sessions/stream")
	for ss.next().Event != protocol.SSESnapshotComplete {
	}
	var acc protocol.CommandAccepted
	c.must(http.StatusAccepted, &acc, "POST", "/sessions/a/commands", `{"type":"prompt","text":"queued","queue":true}`)
	if acc.ID != 1 {
		t.Fatalf("queued prompt id %d; want 1", acc.ID)
	}
	// The session stream shows it waiting, then taken.
	if up := ss.next(); up.Event != protocol.SSESessionUpdated || up.Data != `{"id":"a","fields":{"ackedCommandId":0,"pendingCommands":1}}` {
		t.Fatalf("session stream after the queued prompt: %+v", up)
	}
	if rec := c.session("a"); rec.PendingCommands != 1 {
		t.Fatalf("pendingCommands %d; want 1", rec.PendingCommands)
	}
	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	wantCommand(t, cmds, 1, "queued")
	if up := ss.next(); up.Event != protocol.SSESessionUpdated || !strings.Contains(up.Data, `"status":"live"`) {
		t.Fatalf("session stream after the sandbox connected: %+v", up)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"heartbeat"}`, protocol.HeaderInstance, "i1", protocol.HeaderCommandCursor, "1")
	if up := ss.next(); up.Event != protocol.SSESessionUpdated || up.Data != `{"id":"a","fields":{"ackedCommandId":1,"pendingCommands":0}}` {
		t.Fatalf("session stream after the acknowledgement: %+v", up)
	}
	// Queue with a sandbox connected is an ordinary prompt.
	c.must(http.StatusAccepted, &acc, "POST", "/sessions/a/commands", `{"type":"prompt","text":"second","queue":true}`)
	wantCommand(t, cmds, 2, "second")
}

// TestCreateValidation: bad create bodies are refused naming the field.
func TestCreateValidation(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	for _, tt := range []struct{ body, want string }{
		{`{"prompt":5}`, "prompt: must be a string"},
		{`{"prompt":""}`, "prompt: must not be empty"},
		{`{"prompt":"  \n"}`, "prompt: must not be empty"},
		{`{"project":"a b","prompt":"x"}`, "project:"},
		{`[]`, "JSON object"},
	} {
		e := c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "POST", "/sessions/a", tt.body)
		if !strings.Contains(e.Message, tt.want) {
			t.Errorf("body %s: message %q; want it to contain %q", tt.body, e.Message, tt.want)
		}
	}
	// A null prompt is no prompt.
	var created protocol.CreatedSession
	c.must(http.StatusCreated, &created, "POST", "/sessions/a", `{"prompt":null}`)
	if created.PendingCommands != 0 {
		t.Errorf("null prompt made %d commands", created.PendingCommands)
	}
}

// TestTakeoverInterruptsTurn: a new instance taking the command stream
// while a turn is open closes it as interrupted, through the event log; the
// same instance reconnecting does not.
func TestTakeoverInterruptsTurn(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	old := c.stream("/sessions/a/commands", protocol.HeaderInstance, "old")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events",
		`[{"type":"turn_started","turnId":"t1","source":"user","agentSeq":1},{"type":"text_delta","id":"m1","delta":"half a sen","agentSeq":2}]`,
		protocol.HeaderInstance, "old")

	// The same instance reconnecting (agentd's stream came back) keeps
	// its turn.
	old.close()
	old = c.stream("/sessions/a/commands", protocol.HeaderInstance, "old")
	if st := turnStatus(t, c.artifactsOf("a")); st != "running" {
		t.Fatalf("turn after the same instance reconnected: %q; want running", st)
	}

	ss := c.stream("/sessions/stream")
	for ss.next().Event != protocol.SSESnapshotComplete {
	}
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "new")
	old.expectEnd()
	arts := c.artifactsOf("a")
	if st := turnStatus(t, arts); st != "interrupted" {
		t.Fatalf("turn after a new instance took over: %q; want interrupted", st)
	}
	var notice, text bool
	for _, a := range arts {
		switch a["type"] {
		case "notice":
			notice = notice || a["code"] == "turn_interrupted"
		case "assistant_text":
			text = a["status"] == "interrupted"
		}
	}
	if !notice || !text {
		t.Errorf("artifacts %v: want a turn_interrupted notice and the text block interrupted", arts)
	}
	if rec := c.session("a"); rec.Status != protocol.StatusLive {
		t.Errorf("status after takeover: %s; want live (the new instance holds the stream)", rec.Status)
	}
	// The session stream says no status the database never held: the
	// takeover stores live over live, so it tells nothing (it used to
	// tell idle, for the interrupted turn, then live, in one commit).
	c.must(http.StatusCreated, nil, "POST", "/sessions/mark", nil)
	for e := ss.next(); e.Event != protocol.SSESessionCreated; e = ss.next() {
		t.Errorf("session stream after a takeover of a live session: %s %s; want nothing", e.Event, e.Data)
	}

	// The server's turn_completed is in the log, so a fold from the log
	// (a restarted server) tells the same story.
	evs, err := s.Store().Events(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	last := evs[len(evs)-1]
	var ev protocol.Event
	if err := json.Unmarshal(last.Body, &ev); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || ev.Type != protocol.EventTurnCompleted || ev.StopReason != protocol.StopInterrupted || last.Instance != "" || last.AgentSeq != 0 || ev.ReceivedAt == 0 {
		t.Fatalf("log has %d events, last %+v %s; want the server's turn_completed interrupted", len(evs), last, last.Body)
	}

	// A third instance finds no open turn: nothing is added.
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "third")
	if evs, _ := s.Store().Events(context.Background(), "a"); len(evs) != 3 {
		t.Errorf("takeover without an open turn wrote events: %d; want 3", len(evs))
	}
}

// TestTakeoverKeepsTheNewInstancesOwnTurn: the turn a takeover interrupts
// is one the instance it replaces ran. A new agentd posts before its
// command stream is open (its agent_started, and whatever its agent does
// by itself meanwhile: a turn of its own, source agent); that turn was
// closed as interrupted when the stream opened, "...; old, which ran the
// turn, is gone", though the new instance ran it and went on with it.
// The same after a restart, from a state folded from the log.
func TestTakeoverKeepsTheNewInstancesOwnTurn(t *testing.T) {
	t.Parallel()
	db := t.TempDir() + "/rein.db"
	s := start(t, app.Options{DBPath: db})
	c := newClient(t, s)
	for _, id := range []string{"a", "b"} {
		c.must(http.StatusCreated, nil, "POST", "/sessions/"+id, nil)
		c.stream("/sessions/"+id+"/commands", protocol.HeaderInstance, "old").close()
		c.must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/events",
			`[{"type":"turn_started","turnId":"t1","source":"user","agentSeq":1},{"type":"turn_completed","turnId":"t1","stopReason":"end_turn","agentSeq":2}]`,
			protocol.HeaderInstance, "old")
		c.must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/events",
			`[{"type":"turn_started","turnId":"agent-1","source":"agent","agentSeq":1},{"type":"text_delta","id":"m1","delta":"a background task finished","agentSeq":2}]`,
			protocol.HeaderInstance, "new")
	}
	check := func(id string) {
		t.Helper()
		c.stream("/sessions/"+id+"/commands", protocol.HeaderInstance, "new")
		var turns []protocol.Turn
		c.must(http.StatusOK, &turns, "GET", "/sessions/"+id+"/turns", nil)
		if len(turns) != 2 || turns[1].Status != "running" || turns[1].Error != "" {
			t.Fatalf("session %s: turns after the instance that runs the open one opened its stream: %+v; want agent-1 running", id, turns)
		}
		c.must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/events",
			`{"type":"turn_completed","turnId":"agent-1","stopReason":"end_turn","agentSeq":3}`, protocol.HeaderInstance, "new")
		c.must(http.StatusOK, &turns, "GET", "/sessions/"+id+"/turns", nil)
		if turns[1].Status != "completed" {
			t.Fatalf("session %s: turn agent-1 after its end: %+v; want completed", id, turns[1])
		}
	}
	check("a")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = start(t, app.Options{DBPath: db})
	c = newClient(t, s)
	check("b")
}

// TestTakeoverWithoutInstanceInterruptsTurn: a command stream opened
// without Rein-Instance (an operator's curl with the client token, an
// agentd from before the header) takes the stream over as a new instance
// does: the agentd that held it is superseded (its next POST is 409, and
// it exits for good). Its open turn was left running, though nothing
// will ever end it, and a later instance taking over did not end it
// either (the session named no current instance): the transcript said the
// turn ran on. It ends interrupted, as under a new instance.
func TestTakeoverWithoutInstanceInterruptsTurn(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	old := c.stream("/sessions/a/commands", protocol.HeaderInstance, "old")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events",
		`[{"type":"turn_started","turnId":"t1","source":"user","agentSeq":1},{"type":"text_delta","id":"m1","delta":"half a sen","agentSeq":2}]`,
		protocol.HeaderInstance, "old")

	peek := c.stream("/sessions/a/commands")
	old.expectEnd()
	c.wantError(http.StatusConflict, protocol.CodeSuperseded, "POST", "/sessions/a/events",
		`{"type":"text_delta","id":"m1","delta":"tence","agentSeq":3}`, protocol.HeaderInstance, "old")
	if st := turnStatus(t, c.artifactsOf("a")); st != "interrupted" {
		t.Fatalf("turn after a connection without %s took the stream from its agentd: %q; want interrupted", protocol.HeaderInstance, st)
	}
	peek.close()
}

func turnStatus(t *testing.T, arts []map[string]any) any {
	t.Helper()
	for _, a := range arts {
		if a["type"] == "turn" {
			return a["status"]
		}
	}
	t.Fatalf("no turn in %v", arts)
	return nil
}

// TestAckSurvivesRestart: the old instance's acknowledgements no
// longer count; the holder's do, and they survive a server restart.
func TestAckSurvivesRestart(t *testing.T) {
	t.Parallel()
	db := t.TempDir() + "/rein.db"
	s := start(t, app.Options{DBPath: db})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{"prompt":"one"}`)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"prompt","text":"two","queue":true}`)
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "old")
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "new", "Last-Event-ID", "0")
	c.wantError(http.StatusConflict, protocol.CodeSuperseded, "POST", "/sessions/a/events", `{"type":"heartbeat"}`, protocol.HeaderInstance, "old", protocol.HeaderCommandCursor, "2")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"heartbeat"}`, protocol.HeaderInstance, "new", protocol.HeaderCommandCursor, "1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = start(t, app.Options{DBPath: db})
	c = newClient(t, s)
	if rec := c.session("a"); rec.AckedCommandID != 1 || rec.PendingCommands != 1 {
		t.Fatalf("after restart: acked %d pending %d; want 1, 1", rec.AckedCommandID, rec.PendingCommands)
	}
	// The unacknowledged prompt goes to whoever connects next.
	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "new")
	wantCommand(t, cmds, 2, "two")
}

// TestCommandsAfterTheDatabaseWentBack: a sandbox that had commands the
// database no longer holds (restored from an older backup, or commits
// lost with the disk) says so with its Last-Event-ID or its cursor. The
// server numbers the next commands after that id, across a restart: a
// sandbox skips a command whose id is not above the last it was given,
// so one numbered from the restored history would never reach the
// agent, while the sandbox's cursor acknowledged it.
func TestCommandsAfterTheDatabaseWentBack(t *testing.T) {
	t.Parallel()
	db := freshDB(t)
	s := start(t, app.Options{DBPath: db})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{"prompt":"one"}`)
	first := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	wantCommand(t, first, 1, "one")
	first.close()
	// agentd's in-process reconnection sends the last command it was
	// given, which can only lower what was acknowledged.
	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1", "Last-Event-ID", "3")
	if rec := c.session("a"); rec.AckedCommandID != 0 || rec.PendingCommands != 3 {
		t.Fatalf("after Last-Event-ID 3 of the instance that acknowledged none: %+v; want acked 0, 3 pending", rec)
	}
	var acc protocol.CommandAccepted
	c.must(http.StatusAccepted, &acc, "POST", "/sessions/a/commands", `{"type":"prompt","text":"next"}`)
	if acc.ID != 4 {
		t.Fatalf("first command after Last-Event-ID 3: id %d; want 4", acc.ID)
	}
	wantCommand(t, cmds, 4, "next")

	// Its cursor on an event post says the same.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"heartbeat"}`, protocol.HeaderInstance, "i1", protocol.HeaderCommandCursor, "6")
	if rec := c.session("a"); rec.AckedCommandID != 6 || rec.PendingCommands != 0 {
		t.Fatalf("after cursor 6: %+v; want acked 6, none pending", rec)
	}
	c.must(http.StatusAccepted, &acc, "POST", "/sessions/a/commands", `{"type":"prompt","text":"later"}`)
	if acc.ID != 7 {
		t.Fatalf("first command after cursor 6: id %d; want 7", acc.ID)
	}
	wantCommand(t, cmds, 7, "later")
	// Another instance's word does not count.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"heartbeat"}`, protocol.HeaderInstance, "other", protocol.HeaderCommandCursor, "50")
	cmds.close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = start(t, app.Options{DBPath: db})
	c = newClient(t, s)
	if rec := c.session("a"); rec.AckedCommandID != 6 || rec.PendingCommands != 1 {
		t.Fatalf("after restart: %+v; want acked 6, 1 pending", rec)
	}
	again := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1", "Last-Event-ID", "7")
	wantNext(t, c, again, 8)
}

// TestCommandStreamSessionCreated: the command stream's answer carries the
// session's createdAt, and a session deleted and created again with the
// same id carries another, so a sandbox can tell its state for the old
// session from the new one.
func TestCommandStreamSessionCreated(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := start(t, app.Options{Now: clock.Now})
	c := newClient(t, s)
	created := func() string {
		t.Helper()
		st := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
		defer st.close()
		return st.resp.Header.Get(protocol.HeaderSessionCreated)
	}
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{}`)
	first := created()
	if want := itoa(c.session("a").CreatedAt); first != want {
		t.Fatalf("%s: %q; want the session's createdAt %s", protocol.HeaderSessionCreated, first, want)
	}
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil)
	clock.Add(time.Millisecond)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{}`)
	second := created()
	if want := itoa(c.session("a").CreatedAt); second != want || second == first {
		t.Fatalf("after delete and create: %s %q (first %q); want the new createdAt %s", protocol.HeaderSessionCreated, second, first, want)
	}
}

// TestSandboxOfADeletedNamesakeIsRefused: an agentd of a session deleted
// and created again with the same id (authentication off, so no token
// tells them apart) names the createdAt it holds in
// protocol.HeaderSessionCreated. Its command cursor must not acknowledge
// the new session's commands (the new session's first prompt would never
// reach its own sandbox), and its events must not enter the new
// session's transcript: both are refused with 409 conflict before
// anything changes. The new session's own sandbox, naming the new
// createdAt, is served as usual, and a request without the header as
// before.
func TestSandboxOfADeletedNamesakeIsRefused(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := start(t, app.Options{Now: clock.Now})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{"prompt":"old first"}`)
	oldAt := itoa(c.session("a").CreatedAt)
	old := c.stream("/sessions/a/commands", protocol.HeaderInstance, "old", protocol.HeaderSessionCreated, oldAt)
	wantCommand(t, old, 1, "old first")
	old.close()

	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil)
	clock.Add(time.Millisecond)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{"prompt":"new first"}`)
	newAt := itoa(c.session("a").CreatedAt)

	// The old agentd reconnects with its cursor, and posts what its
	// outbox held with it.
	if st, status := c.tryStream("/sessions/a/commands", protocol.HeaderInstance, "old", "Last-Event-ID", "1", protocol.HeaderSessionCreated, oldAt); status != http.StatusConflict {
		if st != nil {
			st.close()
		}
		t.Fatalf("the old sandbox's command stream: status %d; want 409", status)
	}
	e := c.wantError(http.StatusConflict, protocol.CodeConflict, "POST", "/sessions/a/events",
		[]any{ev("text_delta", "delta", "old text", "agentSeq", 7)},
		protocol.HeaderInstance, "old", protocol.HeaderCommandCursor, "1", protocol.HeaderSessionCreated, oldAt)
	if !strings.Contains(e.Message, "created again") {
		t.Errorf("refusal %q; want it to say the session was created again", e.Message)
	}
	rec := c.session("a")
	if rec.AckedCommandID != 0 || rec.PendingCommands != 1 || rec.Status != protocol.StatusBootstrapping {
		t.Fatalf("after the old sandbox's requests: acked %d, pending %d, status %s; want 0, 1, bootstrapping (nothing changed)", rec.AckedCommandID, rec.PendingCommands, rec.Status)
	}
	var page struct{ Events []json.RawMessage }
	c.must(http.StatusOK, &page, "GET", "/sessions/a/events", nil)
	if len(page.Events) != 0 {
		t.Fatalf("the new session's event log holds %s; want nothing of the old session's", page.Events)
	}

	// A malformed header is refused, naming it.
	e = c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "POST", "/sessions/a/events", []any{ev("heartbeat")}, protocol.HeaderSessionCreated, "yesterday")
	if !strings.Contains(e.Message, protocol.HeaderSessionCreated) {
		t.Errorf("refusal %q; want it to name %s", e.Message, protocol.HeaderSessionCreated)
	}

	// The new session's sandbox gets its first prompt, and its events
	// are stored.
	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "new", protocol.HeaderSessionCreated, newAt)
	defer cmds.close()
	if got := cmds.resp.Header.Get(protocol.HeaderSessionCreated); got != newAt {
		t.Fatalf("answer's %s %q; want %s", protocol.HeaderSessionCreated, got, newAt)
	}
	wantCommand(t, cmds, 1, "new first")
	var got protocol.EventsAccepted
	c.must(http.StatusAccepted, &got, "POST", "/sessions/a/events", []any{ev("text_delta", "delta", "new text", "agentSeq", 1)},
		protocol.HeaderInstance, "new", protocol.HeaderCommandCursor, "1", protocol.HeaderSessionCreated, newAt)
	// Without the header: as before.
	c.must(http.StatusAccepted, &got, "POST", "/sessions/a/events", []any{ev("text_delta", "delta", " more", "agentSeq", 2)},
		protocol.HeaderInstance, "new")
	if rec := c.session("a"); rec.AckedCommandID != 1 || rec.PendingCommands != 0 {
		t.Fatalf("after the new sandbox's post: acked %d, pending %d; want 1, 0", rec.AckedCommandID, rec.PendingCommands)
	}
	c.must(http.StatusOK, &page, "GET", "/sessions/a/events", nil)
	if len(page.Events) != 2 || strings.Contains(string(page.Events[0]), "old text") {
		t.Fatalf("the new session's event log holds %s; want its own two events", page.Events)
	}
}

// TestCommandStreamHeaderIsTheOpenedSession: the answer's
// protocol.HeaderSessionCreated is the createdAt of the session the stream
// was opened on, even when the session is deleted and created again just
// before the opening: the sandbox, which keeps its state by it, must not
// take the new session's commands for the old session's.
func TestCommandStreamHeaderIsTheOpenedSession(t *testing.T) {
	t.Parallel()
	g := newGatedStore(t)
	clock := newFakeClock()
	s := start(t, app.Options{Store: g, Now: clock.Now})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{"prompt":"old first"}`)
	oldAt := itoa(c.session("a").CreatedAt)
	clock.Add(time.Millisecond)
	var header string
	var first sseEvent
	got := oneGroup(t, s, g,
		func() int { st, _ := c.do("DELETE", "/sessions/a", nil); return st },
		func() int { st, _ := c.do("POST", "/sessions/a", `{"prompt":"new first"}`); return st },
		func() int {
			st, status := c.tryStream("/sessions/a/commands", protocol.HeaderInstance, "new")
			if st != nil {
				header = st.resp.Header.Get(protocol.HeaderSessionCreated)
				first = st.next()
				st.close()
			}
			return status
		})
	if got[0] != http.StatusCreated || got[1] != http.StatusOK {
		t.Fatalf("create and open behind the delete: %v; want 201, 200", got)
	}
	newAt := itoa(c.session("a").CreatedAt)
	if header != newAt || header == oldAt || !strings.Contains(first.Data, "new first") {
		t.Fatalf("stream opened on the new session (command %s): %s %q; want the new session's createdAt %s (the old one's was %s)", first.Data, protocol.HeaderSessionCreated, header, newAt, oldAt)
	}
}

// TestSessionCreatedAgainInTheSameMillisecond: a session deleted and
// created again within one millisecond of the clock (a script's `rein rm`
// then create, on loopback), or after the clock stepped back, still gets
// a createdAt of its own, or nothing would tell the old session's
// sandbox from the new one's: the old agentd would take the new
// session's first prompt.
func TestSessionCreatedAgainInTheSameMillisecond(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := start(t, app.Options{Now: clock.Now})
	c := newClient(t, s)
	seen := map[int64]bool{}
	for round, step := range []time.Duration{0, 0, -5 * time.Millisecond, 0} {
		clock.Add(step)
		c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{"prompt":"first"}`)
		at := c.session("a").CreatedAt
		if seen[at] {
			t.Fatalf("round %d (clock moved %v): createdAt %d again; want one no earlier session of the id had", round, step, at)
		}
		seen[at] = true
		if round > 0 {
			// The sandbox of the session before, with its createdAt, is
			// refused.
			for prev := range seen {
				if prev == at {
					continue
				}
				if st, status := c.tryStream("/sessions/a/commands", protocol.HeaderInstance, "old", protocol.HeaderSessionCreated, itoa(prev)); status != http.StatusConflict {
					if st != nil {
						st.close()
					}
					t.Fatalf("round %d: a sandbox naming the earlier createdAt %d: status %d; want 409", round, prev, status)
				}
			}
		}
		c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil)
	}
}

// TestCommandStreamOpenedWithDeleteAndCreateInOneGroup: the old session's
// sandbox holds its command stream; the session is deleted, created again
// and the new session's sandbox opens its stream, the three in one group
// commit. The old stream ends; the new one stays open and gets the new
// session's commands, and the session stays live.
func TestCommandStreamOpenedWithDeleteAndCreateInOneGroup(t *testing.T) {
	t.Parallel()
	g := newGatedStore(t)
	clock := newFakeClock()
	s := start(t, app.Options{Store: g, Now: clock.Now})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusCreated, nil, "POST", "/sessions/b", nil)
	oldAt := itoa(c.session("a").CreatedAt)
	old := c.stream("/sessions/a/commands", protocol.HeaderInstance, "old", protocol.HeaderSessionCreated, oldAt)
	clock.Add(time.Millisecond)
	var cmds *sseStream
	got := oneGroup(t, s, g,
		func() int {
			st, _ := c.do("POST", "/sessions/b/events", []any{ev("notice", "level", "info", "message", "hold")})
			return st
		},
		func() int { st, _ := c.do("DELETE", "/sessions/a", nil); return st },
		func() int { st, _ := c.do("POST", "/sessions/a", `{"prompt":"new first"}`); return st },
		func() int {
			var st int
			cmds, st = c.tryStream("/sessions/a/commands", protocol.HeaderInstance, "new")
			return st
		})
	if got[0] != http.StatusNoContent || got[1] != http.StatusCreated || got[2] != http.StatusOK {
		t.Fatalf("delete, create, open: %v; want 204, 201, 200", got)
	}
	old.expectEnd()
	wantCommand(t, cmds, 1, "new first")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"prompt","text":"second"}`)
	wantCommand(t, cmds, 2, "second")
	if st := c.session("a").Status; st != protocol.StatusLive {
		t.Fatalf("session %s while the new sandbox holds its stream; want live", st)
	}
}

// TestPromptToSessionCreatedAgainInOneGroup: a prompt sent without
// "queue" to a session deleted and created again earlier in the same
// group commit has no sandbox: the old session's, whose stream the
// delete ends, is not the new one's. It is refused with no_sandbox, as
// it would be a moment later, not accepted as if delivered now.
func TestPromptToSessionCreatedAgainInOneGroup(t *testing.T) {
	t.Parallel()
	g := newGatedStore(t)
	clock := newFakeClock()
	s := start(t, app.Options{Store: g, Now: clock.Now})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusCreated, nil, "POST", "/sessions/b", nil)
	old := c.stream("/sessions/a/commands", protocol.HeaderInstance, "old")
	clock.Add(time.Millisecond)
	got := oneGroup(t, s, g,
		func() int {
			st, _ := c.do("POST", "/sessions/b/events", []any{ev("notice", "level", "info", "message", "hold")})
			return st
		},
		func() int { st, _ := c.do("DELETE", "/sessions/a", nil); return st },
		func() int { st, _ := c.do("POST", "/sessions/a", nil); return st },
		func() int {
			st, _ := c.do("POST", "/sessions/a/commands", `{"type":"prompt","text":"for nobody"}`)
			return st
		})
	if got[0] != http.StatusNoContent || got[1] != http.StatusCreated {
		t.Fatalf("delete, create: %v; want 204, 201", got)
	}
	old.expectEnd()
	if got[2] != http.StatusConflict {
		t.Fatalf("prompt without queue to the new session: %d; want 409 no_sandbox (no sandbox holds the new session)", got[2])
	}
	if rec := c.session("a"); rec.PendingCommands != 0 {
		t.Fatalf("the new session holds %d pending commands; want none", rec.PendingCommands)
	}
}

// TestCreateBodyRefusalSaysWhy: a create body that is not a JSON object
// is refused saying what is wrong with it, as a command's is: the message
// was the same example object whatever the body, so a client whose body
// was cut short or held a stray comma was not told where.
func TestCreateBodyRefusalSaysWhy(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	for body, why := range map[string]string{
		`{"project":"web",`:         "unexpected end of JSON input",
		`{"project":"web",}`:        "at byte 18",
		`{"project":"web"} {}`:      "after top-level value",
		`["web"]`:                   "found array",
		`"web"`:                     "found string",
		`null`:                      "found null",
		`{"project":"web","x":tru}`: "in literal true",
	} {
		e := c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "POST", "/sessions/a", body)
		if !strings.Contains(e.Message, "JSON object") || !strings.Contains(e.Message, why) {
			t.Errorf("body %s: %q; want it to say it is no JSON object, and %q", body, e.Message, why)
		}
	}
	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", "/sessions/a", nil)
}
