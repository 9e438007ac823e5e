package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/internal/sqlite"
	"github.com/rein-ai/rein/server/store"
)

// Deferred materialisation (materialise.go) on SQLite, the store that
// stages. Every group defers here, not only busy ones.

func turnEvents(id string) []any {
	return []any{
		ev("turn_started", "turnId", "t-"+id, "source", "user"),
		ev("user_message", "text", "question "+id),
		ev("text_delta", "id", "m-"+id, "delta", "first "),
		ev("tool_call_start", "id", "tool-"+id, "name", "sh"),
		ev("tool_output_delta", "id", "tool-"+id, "delta", "out "),
		ev("text_delta", "id", "m-"+id, "delta", "second"),
	}
}

// lagging reports whether session id's stored artifacts lag its log now.
func lagging(s *app.App, id string) bool { return server.Lagging(s.Server)[id] }

// The tests that need a session to lag give the server a clock of their
// own (newFakeClock): on the real one the timed settle (settleEvery,
// 250 ms) could come between a test's appends and its look at the lag
// whenever the machine is busy, and the session no longer lagged. They
// move the clock past server.SettleEvery when the timer is to settle.

// While a session's artifacts lag its log, every read of them (a new
// stream's replay, a resume, GET /artifacts) still holds every change
// acknowledged before it, and a stream that was following gets each change
// once; once settled (here by the timer, with no read asking) the store
// holds the fold of the log.
func TestDeferredArtifactsReadExactly(t *testing.T) {
	server.DeferEveryGroup(t)
	clk := newFakeClock()
	s := start(t, app.Options{DBPath: filepath.Join(t.TempDir(), "rein.db"), Now: clk.Now})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	early := newModel(t)
	st1 := c.stream("/sessions/a/stream")
	defer st1.close()
	early.readSnapshot(st1)

	for i, e := range turnEvents("1") {
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{e})
		if i == 2 && !lagging(s, "a") {
			t.Fatal("test setup: the session's artifacts do not lag after deferred appends")
		}
	}
	// A follower arriving now replays from the store: settled first.
	late, st2 := replayTurn(t, c, "a")
	defer st2.close()
	if lagging(s, "a") {
		t.Error("a replay's read did not settle the session")
	}
	// A resume from the middle after more deferred appends.
	resumeFrom := late.lastID
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("tool_output_delta", "id", "tool-1", "delta", "more")})
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("text_delta", "id", "m-1", "delta", " third")})
	resumed := newModel(t)
	for seq, a := range late.arts {
		cp := *a
		resumed.arts[seq] = &cp
	}
	st3 := c.stream("/sessions/a/stream", "Last-Event-ID", resumeFrom)
	defer st3.close()
	resumed.readSnapshot(st3)
	resumed.equal(c, "a")

	// The first follower got it all live, each change once.
	settle(t, s, "a")
	head := storedRev(t, s, "a")
	early.readUntilRev(st1, head)
	early.equal(c, "a")

	// Appends with no reader: the timer settles them.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("text_delta", "id", "m-1", "delta", " fourth")})
	if !lagging(s, "a") {
		t.Fatal("test setup: no lag after a deferred append")
	}
	clk.Add(server.SettleEvery)
	eventually(t, "the timer settles the session", func() bool { return !lagging(s, "a") })
	checkFold(t, s, "a")
	if ids, err := s.Store().(store.Stager).StagedSessions(t.Context()); err != nil || len(ids) != 0 {
		t.Errorf("after the timer's settle, staged sessions = %v, %v; want none", ids, err)
	}
}

// crashable starts a server on a SQLite file at path whose writes all
// fail once fs.full is set (the crash), on a clock of its own (see
// lagging), and returns what closes it and the file: called by the test,
// or at cleanup when the test failed before (a writer left running reads
// what DeferEveryGroup's cleanup writes).
func crashable(t *testing.T, path string) (s *app.App, fs *fullStore, closeS func() error) {
	t.Helper()
	db, err := sqlite.Open(t.Context(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fs = &fullStore{Store: db}
	s, err = app.New(app.Options{Store: fs, Now: newFakeClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	closeS = sync.OnceValue(func() error {
		if err := s.Close(); err != nil {
			return err
		}
		return db.Close()
	})
	t.Cleanup(func() { _ = closeS() })
	return s, fs, closeS
}

// A crash (here: every write fails from one moment on, and the process
// stops without its final settle) leaves staged events and artifacts that
// lag them. The next start settles them before it serves: the store holds
// the fold of the log, with the revisions the followers were sent, so a
// follower of the crashed server resumes exactly.
func TestCrashWhileLaggingSettlesAtStart(t *testing.T) {
	server.DeferEveryGroup(t)
	path := filepath.Join(t.TempDir(), "rein.db")
	s1, fs, closeS1 := crashable(t, path)
	c := newClient(t, s1)
	for _, id := range []string{"a", "b"} {
		c.must(http.StatusCreated, nil, "POST", "/sessions/"+id, nil)
	}
	m := newModel(t)
	st := c.stream("/sessions/a/stream")
	m.readSnapshot(st)
	for _, e := range turnEvents("1") {
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{e})
		c.must(http.StatusAccepted, nil, "POST", "/sessions/b/events", []any{e})
	}
	fs.full.Store(true) // the crash: nothing is written from here on
	if !lagging(s1, "a") || !lagging(s1, "b") {
		t.Fatal("test setup: the sessions did not lag when the server crashed")
	}
	// Everything acknowledged was sent live, up to the revision the log
	// folds to; the model is what the follower saw.
	m.readUntilRev(st, logRev(t, s1, "a"))
	seen := m.lastID
	st.close()
	if err := closeS1(); err != nil {
		t.Fatal(err)
	}

	s2 := start(t, app.Options{DBPath: path})
	for _, id := range []string{"a", "b"} {
		checkFold(t, s2, id)
	}
	if ids, err := s2.Store().(store.Stager).StagedSessions(t.Context()); err != nil || len(ids) != 0 {
		t.Errorf("after the start, staged sessions = %v, %v; want none", ids, err)
	}
	if lagging(s2, "a") {
		t.Error("a session still lags after the start")
	}
	c = newClient(t, s2)
	if head := storedRev(t, s2, "a"); itoa(head) != seen {
		t.Fatalf("stored revision %d after the restart; the follower was sent up to %s", head, seen)
	}
	m.equal(c, "a")
	// A resume from what the follower saw replays nothing new.
	st = c.stream("/sessions/a/stream", "Last-Event-ID", seen)
	defer st.close()
	resumed := newModel(t)
	resumed.readSnapshot(st)
	if len(resumed.arts) != 0 {
		t.Errorf("a resume at the head replayed %d artifacts", len(resumed.arts))
	}
	// And the session goes on from there.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("text_delta", "id", "m-1", "delta", " after")})
	settle(t, s2, "a")
	checkFold(t, s2, "a")
}

// The start's settle of a session that lagged at a crash folds its log
// releasing what the store already holds (closed artifacts at or below
// the stored revision: here six tool outputs of 1 MiB, settled before
// the crash), and holds what it must write: a 5 MiB output that ran and
// closed after the last settle, and another still running. The store
// then holds the fold of the log.
func TestCrashWhileLaggingSettlesBigOutputs(t *testing.T) {
	server.DeferEveryGroup(t)
	path := filepath.Join(t.TempDir(), "rein.db")
	s1, fs, closeS1 := crashable(t, path)
	c := newClient(t, s1)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	chunk := strings.Repeat("z", 64<<10)
	post := func(e any) { c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{e}) }
	tool := func(id string, chunks int) {
		post(ev("tool_call_start", "id", id, "name", "sh"))
		for range chunks {
			post(ev("tool_output_delta", "id", id, "delta", chunk))
		}
		post(ev("tool_call_end", "id", id, "status", "completed"))
	}
	post(ev("turn_started", "turnId", "t-1", "source", "user"))
	for i := range 6 {
		tool(fmt.Sprintf("early-%d", i), 16)
	}
	post(ev("turn_completed", "turnId", "t-1", "stopReason", "end_turn"))
	settle(t, s1, "a")
	post(ev("turn_started", "turnId", "t-2", "source", "user"))
	tool("late", 80)
	// Still running, and big enough that the fold releases again after
	// "late" closed.
	post(ev("tool_call_start", "id", "running", "name", "sh"))
	for range 80 {
		post(ev("tool_output_delta", "id", "running", "delta", chunk))
	}
	fs.full.Store(true) // the crash
	if !lagging(s1, "a") {
		t.Fatal("test setup: the session did not lag when the server crashed")
	}
	if err := closeS1(); err != nil {
		t.Fatal(err)
	}
	s2 := start(t, app.Options{DBPath: path})
	if lagging(s2, "a") {
		t.Fatal("the session still lags after the start")
	}
	checkFold(t, s2, "a")
}

// A commit that fails while a session lags drops the reducer state that
// knew what lagged; the session is then settled from its log, and the
// events accepted before and after the failure all reach the store.
func TestFailedCommitWhileLagging(t *testing.T) {
	server.DeferEveryGroup(t)
	s, fs := startFull(t)
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	events := turnEvents("1")
	for _, e := range events[:4] {
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{e})
	}
	fs.full.Store(true)
	c.wantError(http.StatusServiceUnavailable, "unavailable", "POST", "/sessions/a/events", []any{events[4]})
	fs.full.Store(false)
	for _, e := range events[4:] {
		eventually(t, "an append succeeds again", func() bool {
			code, _ := c.do("POST", "/sessions/a/events", []any{e})
			return code == http.StatusAccepted
		})
	}
	settle(t, s, "a")
	checkFold(t, s, "a")
	_, st := replayTurn(t, c, "a")
	st.close()
}

// replayTurn opens session id's stream, reads its replay into a model,
// which must equal GET /artifacts and hold turnEvents' four artifacts, and
// returns both.
func replayTurn(t *testing.T, c *client, id string) (*model, *sseStream) {
	t.Helper()
	m := newModel(t)
	st := c.stream("/sessions/" + id + "/stream")
	m.readSnapshot(st)
	m.equal(c, id)
	if len(m.arts) != 4 {
		t.Errorf("the replay gave %d artifacts; want the turn, the message, the text and the tool call", len(m.arts))
	}
	return m, st
}

// logRev is the revision session id's event log folds to.
func logRev(t *testing.T, s *app.App, id string) int64 {
	t.Helper()
	log, err := s.Store().Events(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]protocol.Event, len(log))
	for i, le := range log {
		if err := json.Unmarshal(le.Body, &evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return reducer.Fold(evs).Rev()
}

// settle brings session id's stored artifacts up to its log, for a test
// that reads them from the store (a read through the server settles by
// itself).
func settle(t testing.TB, s *app.App, id string) {
	t.Helper()
	if err := server.Settle(s.Server, id); err != nil {
		t.Fatal(err)
	}
}

// A crash left a permission request in the staged events only, and the
// next start cannot settle (its disk is full): the approvals inbox still
// shows the request, read from a fold of the log.
func TestApprovalsOfAnUnsettledStart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rein.db")
	db := openSQLite(t, path)
	var staged []store.Event
	for i, e := range permissionEvents("t1", "tc1", "r1", 1) {
		body, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		staged = append(staged, store.Event{Pos: int64(i) + 1, Instance: "i1", AgentSeq: int64(i) + 1, Body: body})
	}
	// What a crash leaves: the events staged, no artifact written.
	err := db.Commit(t.Context(), []store.Op{
		store.CreateSession{Session: protocol.Session{ID: "a", Status: protocol.StatusLive, CreatedAt: 1}},
		store.AppendEvents{SessionID: "a", Events: staged, Stage: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	fs := &fullStore{Store: db}
	fs.full.Store(true)
	s := start(t, app.Options{Store: fs})
	c := newClient(t, s)
	if !lagging(s, "a") {
		t.Fatal("test setup: the start settled the session although its disk is full")
	}
	var list []protocol.Approval
	c.must(http.StatusOK, &list, "GET", "/approvals", nil)
	if len(list) != 1 || list[0].SessionID != "a" || list[0].RequestID != "r1" || list[0].Tool == nil || list[0].Tool.ID != "tc1" {
		t.Fatalf("GET /approvals = %+v; want r1 of a, for tool call tc1", list)
	}
	// Once the disk has room, the session settles and reads agree.
	fs.full.Store(false)
	eventually(t, "the session settles", func() bool { return !lagging(s, "a") })
	checkFold(t, s, "a")
}

// While writes fail (a full disk), a lagging session cannot be settled;
// its reads come from a fold of its log instead of failing: a new
// follower's replay and GET /artifacts hold every acknowledged change,
// and once writes work again the store holds the same.
func TestReadsOfALaggingSessionWhileWritesFail(t *testing.T) {
	server.DeferEveryGroup(t)
	clk := newFakeClock()
	s, fs := startFullOpts(t, app.Options{Now: clk.Now})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	for _, e := range turnEvents("1") {
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{e})
	}
	fs.full.Store(true)
	if !lagging(s, "a") {
		t.Fatal("test setup: the session does not lag")
	}
	m, st := replayTurn(t, c, "a")
	st.close()
	if head := logRev(t, s, "a"); m.lastID != itoa(head) {
		t.Errorf("the replay ended at revision %s; the log folds to %d", m.lastID, head)
	}
	var page struct {
		Artifacts []protocol.Artifact `json:"artifacts"`
		Next      *int64              `json:"next"`
	}
	c.must(http.StatusOK, &page, "GET", "/sessions/a/artifacts?after=2&limit=1", nil)
	if len(page.Artifacts) != 1 || page.Artifacts[0].Rev <= 2 {
		t.Errorf("a page after revision 2 while writes fail: %+v", page)
	}
	fs.full.Store(false)
	// Past the write probe's interval and the settle's retry.
	clk.Add(time.Minute)
	eventually(t, "the session settles once writes work", func() bool { return !lagging(s, "a") })
	checkFold(t, s, "a")
	m.equal(c, "a")
}

// A session whose stored artifacts lag its log (materialise.go), deleted
// and created again in one group commit: the new session starts empty. The
// settle of the deleted one must not write its artifacts into the new one.
func TestDeleteAndCreateLaggingSessionInOneGroup(t *testing.T) {
	server.DeferEveryGroup(t)
	g := newGatedStore(t)
	s := start(t, app.Options{Store: g, Now: newFakeClock().Now})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusCreated, nil, "POST", "/sessions/b", nil)
	post := func(id string, e map[string]any) func() int {
		return func() int { st, _ := c.do("POST", "/sessions/"+id+"/events", []any{e}); return st }
	}
	got := oneGroup(t, s, g, post("a", ev("text_delta", "id", "m1", "delta", "old session's text")),
		post("b", ev("text_delta", "id", "m1", "delta", "b")))
	if got[0] != http.StatusAccepted {
		t.Fatalf("setup: %v", got)
	}
	if !lagging(s, "a") {
		t.Fatal("test setup: a's artifacts do not lag its log")
	}
	got = oneGroup(t, s, g, post("b", ev("text_delta", "id", "m1", "delta", "hold")),
		func() int { st, _ := c.do("DELETE", "/sessions/a", nil); return st },
		func() int { st, _ := c.do("POST", "/sessions/a", nil); return st })
	if got[0] != http.StatusNoContent || got[1] != http.StatusCreated {
		t.Fatalf("delete, create: %v; want 204, 201", got)
	}
	if arts := c.artifactsOf("a"); len(arts) != 0 {
		t.Fatalf("the new session a has %d artifacts: %v; want none (they were the deleted a's)", len(arts), arts)
	}
	m := newModel(t)
	st := c.stream("/sessions/a/stream")
	m.readSnapshot(st)
	if len(m.arts) != 0 {
		t.Fatalf("the new session's stream replays %d artifacts; want none", len(m.arts))
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("text_delta", "id", "m2", "delta", "new")})
	m.readUntilRev(st, 1)
	m.equal(c, "a")
	if arts := c.artifactsOf("a"); len(arts) != 1 || arts[0]["text"] != "new" {
		t.Fatalf("the new session a: %v; want its one text", arts)
	}
}
