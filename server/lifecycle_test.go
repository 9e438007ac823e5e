package server_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
)

// skipSnapshot reads a session stream up to snapshot_complete.
func skipSnapshot(t testing.TB, st *sseStream) {
	t.Helper()
	for st.next().Event != protocol.SSESnapshotComplete {
	}
}

// The timeout runs on the server's clock, which the test moves once both
// sessions are created and saved is live: on the real clock, a machine
// busy for the 200 ms between the two creates removed doomed before
// saved was created (and could remove saved before its stream opened).
func TestBootstrapTimeout(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	s := start(t, app.Options{BootstrapTimeout: 200 * time.Millisecond, Now: clk.Now})
	c := newClient(t, s)
	ss := c.stream("/sessions/stream")
	skipSnapshot(t, ss)
	c.must(http.StatusCreated, nil, "POST", "/sessions/doomed", nil)
	c.must(http.StatusCreated, nil, "POST", "/sessions/saved", nil)
	cmds := c.stream("/sessions/saved/commands")
	clk.Add(time.Second)
	// created, created, saved -> live, then the timeout removes doomed.
	var got []string
	for len(got) < 4 {
		e := ss.next()
		got = append(got, e.Event+" "+e.Data[:min(len(e.Data), 40)])
	}
	if !strings.HasPrefix(got[3], `session_removed {"id":"doomed"}`) {
		t.Fatalf("session stream:\n%s", strings.Join(got, "\n"))
	}
	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", "/sessions/doomed", nil)
	var rec protocol.Session
	c.must(http.StatusOK, &rec, "GET", "/sessions/saved", nil)
	if rec.Status != protocol.StatusLive {
		t.Fatalf("saved: %s", rec.Status)
	}
	cmds.close()
}

// agentd posts agent_started while its command stream is still dialling.
// The session stays bootstrapping then, so nobody is invited to send a
// prompt that no sandbox can take; once the stream is open and
// agent_started comes again, it is idle and a plain prompt is taken.
func TestIdleOnlyWithCommandStream(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	started := ev("agent_started", "agent", map[string]any{"name": "demo", "protocol": "native"})
	status := func() protocol.SessionStatus {
		t.Helper()
		var rec protocol.Session
		c.must(http.StatusOK, &rec, "GET", "/sessions/a", nil)
		return rec.Status
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", started, protocol.HeaderInstance, "i1")
	if got := status(); got != protocol.StatusBootstrapping {
		t.Fatalf("after agent_started without a command stream: %s, want bootstrapping", got)
	}
	c.wantError(http.StatusConflict, protocol.CodeNoSandbox, "POST", "/sessions/a/commands", map[string]any{"type": "prompt", "text": "too early"})
	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	if got := status(); got != protocol.StatusLive {
		t.Fatalf("after the stream opened: %s, want live", got)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", started, protocol.HeaderInstance, "i1")
	if got := status(); got != protocol.StatusIdle {
		t.Fatalf("after agent_started on the stream: %s, want idle", got)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", map[string]any{"type": "prompt", "text": "now"})
	if e := cmds.next(); e.Event != protocol.SSECommand || !strings.Contains(e.Data, `"text":"now"`) {
		t.Fatalf("command stream got %+v, want the prompt", e)
	}
}

// A sandbox reconnecting before the server noticed its old stream end:
// the new stream's open and the old one's close land in one group commit,
// in that order. The session stays live, as the new stream holds it, and
// commands reach that stream.
func TestReconnectBeforeOldStreamCloseInOneGroup(t *testing.T) {
	t.Parallel()
	g := newGatedStore(t)
	s := start(t, app.Options{Store: g})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusCreated, nil, "POST", "/sessions/b", nil)
	old := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	var cmds *sseStream
	got := oneGroup(t, s, g,
		func() int {
			st, _ := c.do("POST", "/sessions/b/events", []any{ev("notice", "level", "info", "message", "hold")})
			return st
		},
		func() int {
			var st int
			cmds, st = c.tryStream("/sessions/a/commands", protocol.HeaderInstance, "i1")
			return st
		},
		func() int { old.close(); return 0 })
	if got[0] != http.StatusOK {
		t.Fatalf("reconnect: %d; want 200", got[0])
	}
	if st := c.session("a").Status; st != protocol.StatusLive {
		t.Fatalf("session %s while the new stream holds it; want live", st)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"prompt","text":"still here"}`)
	wantCommand(t, cmds, 1, "still here")
}

func TestHeartbeatTimeout(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{HeartbeatTimeout: 200 * time.Millisecond})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	ss := c.stream("/sessions/stream")
	skipSnapshot(t, ss)
	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	want := func(status protocol.SessionStatus) {
		t.Helper()
		e := ss.next()
		var u protocol.SessionUpdated
		if err := json.Unmarshal([]byte(e.Data), &u); err != nil || e.Event != protocol.SSESessionUpdated || u.Fields.Status == nil || *u.Fields.Status != status {
			t.Fatalf("got %s %s; want status %s", e.Event, e.Data, status)
		}
	}
	want(protocol.StatusLive)
	// The sandbox holds its stream but sends nothing: disconnected.
	want(protocol.StatusDisconnected)
	var rec protocol.Session
	c.must(http.StatusOK, &rec, "GET", "/sessions/a", nil)
	if rec.Status != protocol.StatusDisconnected {
		t.Fatalf("after the heartbeat timeout: %s", rec.Status)
	}
	// A heartbeat from the sandbox that still holds the stream: live again.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", ev("heartbeat"), protocol.HeaderInstance, "i1")
	want(protocol.StatusLive)
	cmds.close()
	want(protocol.StatusDisconnected)
	// Late events of a sandbox that is gone do not bring it back.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", ev("turn_started", "turnId", "t", "source", "user"))
	c.must(http.StatusOK, &rec, "GET", "/sessions/a", nil)
	if rec.Status != protocol.StatusDisconnected {
		t.Fatalf("late event changed status to %s", rec.Status)
	}
}

// A restart on the same file keeps sessions, artifacts and revisions;
// live sessions become disconnected; new events continue the revisions;
// dedupe survives; bootstrap timers continue from createdAt.
func TestRestart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rein.db")
	s1, err := app.New(app.Options{DBPath: path})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s1)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{"project":"p"}`)
	c.must(http.StatusCreated, nil, "POST", "/sessions/pending", nil)
	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"prompt","text":"go"}`)
	cmds.next()
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("agent_started", "agent", map[string]any{"name": "demo", "protocol": "native"}, "agentSeq", 1),
		ev("turn_started", "turnId", "t1", "source", "user", "agentSeq", 2),
		ev("user_message", "text", "go", "agentSeq", 3),
		ev("tool_call_start", "id", "x", "name", "sh", "agentSeq", 4),
		ev("text_delta", "delta", "working", "agentSeq", 5),
	}, protocol.HeaderInstance, "i1")
	m := newModel(t)
	st := c.stream("/sessions/a/stream")
	m.readSnapshot(st)
	var before []json.RawMessage
	c.must(http.StatusOK, &before, "GET", "/sessions/a/artifacts", nil)
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	st.expectEnd()
	cmds.expectEnd()

	s2 := start(t, app.Options{DBPath: path, BootstrapTimeout: time.Hour})
	c = newClient(t, s2)
	var rec protocol.Session
	c.must(http.StatusOK, &rec, "GET", "/sessions/a", nil)
	if rec.Status != protocol.StatusDisconnected || rec.Summary == nil || *rec.Summary != "go" {
		t.Fatalf("after restart: %+v", rec)
	}
	var after []json.RawMessage
	c.must(http.StatusOK, &after, "GET", "/sessions/a/artifacts", nil)
	if string(mustJSON(t, before)) != string(mustJSON(t, after)) {
		t.Fatalf("artifacts changed across restart\nbefore %s\nafter  %s", before, after)
	}
	// The client resumes across the restart.
	st = c.stream("/sessions/a/stream", "Last-Event-ID", m.lastID)
	m.readSnapshot(st)
	// Retried events are still duplicates; new ones continue the revisions
	// and update an older artifact.
	var res protocol.EventsAccepted
	c.must(http.StatusAccepted, &res, "POST", "/sessions/a/events", []any{
		ev("text_delta", "delta", "working", "agentSeq", 5),
		ev("tool_call_end", "id", "x", "status", "completed", "agentSeq", 6),
	}, protocol.HeaderInstance, "i1")
	if res != (protocol.EventsAccepted{Accepted: 1, Duplicates: 1}) {
		t.Fatalf("after restart: %+v", res)
	}
	e := st.next()
	if atoi(t, e.ID) <= m.rev {
		t.Fatalf("revision went back after restart: %s <= %d", e.ID, m.rev)
	}
	m.apply(e)
	m.readUntilRev(st, storedRev(t, s2, "a"))
	m.equal(c, "a")
	// Commands continue their ids; a reconnecting sandbox gets redelivery.
	cmds = c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1", "Last-Event-ID", "0")
	if e := cmds.next(); e.ID != "1" {
		t.Fatalf("redelivered %+v", e)
	}
	var acc protocol.CommandAccepted
	c.must(http.StatusAccepted, &acc, "POST", "/sessions/a/commands", `{"type":"abort"}`)
	if acc.ID != 2 {
		t.Fatalf("command id after restart: %d", acc.ID)
	}
	c.must(http.StatusOK, &rec, "GET", "/sessions/pending", nil)
	if rec.Status != protocol.StatusBootstrapping {
		t.Fatalf("pending: %s", rec.Status)
	}
}

// Bootstrap timers continue from createdAt across a restart, but a
// session whose deadline passed while the server was down is not removed
// as the server starts: its sandbox may have been trying to reach the
// server all along, and the removal answered it 404, which ends agentd,
// and lost the prompt the session was created with (acknowledged 201).
// The sandbox that connects right after the start gets that prompt; one
// that never comes has the session removed once the heartbeat timeout
// has passed since the start (TestRestartRuleOnFakeClock).
func TestRestartBootstrapDeadline(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rein.db")
	now := time.Now()
	s1, err := app.New(app.Options{DBPath: path, Now: func() time.Time { return now.Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	newClient(t, s1).must(http.StatusCreated, nil, "POST", "/sessions/old", `{"prompt":"run it"}`)
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := start(t, app.Options{DBPath: path, BootstrapTimeout: 30 * time.Minute})
	c := newClient(t, s2)
	cmds, status := c.tryStream("/sessions/old/commands", protocol.HeaderInstance, "i1")
	if status != http.StatusOK {
		t.Fatalf("the sandbox's command stream right after the restart: %d; want 200 with the initial prompt", status)
	}
	defer cmds.close()
	if e := cmds.next(); e.ID != "1" || !strings.Contains(e.Data, `"text":"run it"`) {
		t.Fatalf("first command %+v; want the initial prompt", e)
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The agent exiting mid-turn fails the turn, and the session is idle:
// nothing runs, and agentd, still holding the stream, takes the next
// prompt (starting the agent again).
func TestAgentExitedMidTurnIsIdle(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	defer cmds.close()
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("turn_started", "turnId", "t1", "source", "user", "agentSeq", 1)}, protocol.HeaderInstance, "i1")
	if st := c.session("a").Status; st != protocol.StatusLive {
		t.Fatalf("with a turn running: %s; want live", st)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("agent_exited", "code", 1, "agentSeq", 2)}, protocol.HeaderInstance, "i1")
	if st := c.session("a").Status; st != protocol.StatusIdle {
		t.Fatalf("after the agent exited mid-turn: %s; want idle", st)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", map[string]any{"type": "prompt", "text": "again"})
}

// An agent that exits with no turn open is not working on anything
// either: agentd posts agent_exited, and nothing else, for an agent that
// dies before it reports itself (an ACP agent that fails its handshake),
// and goes on restarting it with back-off. The session said live (as the command stream's opening left
// it) for as long, working on nothing.
func TestAgentExitedWithoutTurnIsIdle(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	defer cmds.close()
	if st := c.session("a").Status; st != protocol.StatusLive {
		t.Fatalf("with the command stream open: %s; want live", st)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("agent_exited", "code", 1, "agentSeq", 1),
	}, protocol.HeaderInstance, "i1")
	if st := c.session("a").Status; st != protocol.StatusIdle {
		t.Fatalf("after the agent died before reporting itself: %s; want idle", st)
	}
}
