package server_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"github.com/rein-ai/rein/server/app"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/rein-ai/rein/protocol"
	reinclient "github.com/rein-ai/rein/server/client"
	"github.com/rein-ai/rein/server/internal/sqlite"
	"github.com/rein-ai/rein/server/store"
)

// twoTurns is a completed turn with a prompt, a tool call and usage,
// then a turn that still runs.
func twoTurns() []any {
	return []any{
		ev("turn_started", "turnId", "t1", "source", "user", "promptId", "p1", "agentSeq", 1),
		ev("user_message", "text", "fix <b>the</b> bug & test", "turnId", "t1", "agentSeq", 2),
		ev("tool_call_start", "id", "tc1", "name", "bash", "kind", "execute", "title", "go test", "agentSeq", 3),
		ev("tool_call_end", "id", "tc1", "status", "completed", "agentSeq", 4),
		ev("text_delta", "delta", "done", "agentSeq", 5),
		ev("usage_updated", "inputTokens", 10, "outputTokens", 5, "agentSeq", 6),
		ev("turn_completed", "turnId", "t1", "stopReason", "end_turn", "agentSeq", 7),
		ev("turn_started", "turnId", "t2", "source", "user", "agentSeq", 8),
	}
}

// unescaped is v as JSON with < > & as they are (json.Marshal escapes
// them), as a sandbox may send them.
func unescaped(t *testing.T, v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestTurnsAndEventLog(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "rein.db")
	s := start(t, app.Options{DBPath: db})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", unescaped(t, twoTurns()))

	var turns []protocol.Turn
	c.must(http.StatusOK, &turns, "GET", "/sessions/a/turns", nil)
	if len(turns) != 2 {
		t.Fatalf("turns %+v", turns)
	}
	t1, t2 := turns[0], turns[1]
	if t1.ID != "t1" || t1.Status != "completed" || *t1.StopReason != "end_turn" || t1.Prompt == nil || *t1.Prompt != "fix <b>the</b> bug & test" ||
		t1.PromptID != "p1" || t1.StartPos != 1 || *t1.EndPos != 7 || t1.EndedAt == nil || t1.StartedAt == 0 ||
		len(t1.ToolCalls) != 1 || t1.ToolCalls[0].Name != "bash" || t1.ToolCalls[0].Status != "completed" ||
		!strings.Contains(string(t1.Usage), `"inputTokens":10`) || t1.Digest == nil || len(*t1.Digest) != 64 || !t1.DigestRecorded {
		b, _ := json.Marshal(t1)
		t.Fatalf("turn 1: %s", b)
	}
	if t2.ID != "t2" || t2.Status != "running" || t2.EndPos != nil || t2.Digest != nil || t2.StopReason != nil || t2.StartPos != 8 {
		t.Fatalf("turn 2: %+v", t2)
	}
	var one protocol.Turn
	c.must(http.StatusOK, &one, "GET", "/sessions/a/turns/t1", nil)
	if one.ID != "t1" || *one.Digest != *t1.Digest {
		t.Fatalf("GET /turns/t1 = %+v", one)
	}
	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", "/sessions/a/turns/nope", nil)
	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", "/sessions/nope/turns", nil)
	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", "/sessions/nope/events", nil)
	if e := c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "GET", "/sessions/a/turns/a%20b", nil); !strings.Contains(e.Message, "turnId") {
		t.Fatalf("bad turn id: %q does not name turnId", e.Message)
	}
	for q, field := range map[string]string{"after=-1": "after", "after=x": "after", "limit=0": "limit", "limit=5001": "limit", "limit=1.5": "limit"} {
		if e := c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "GET", "/sessions/a/events?"+q, nil); !strings.Contains(e.Message, field) {
			t.Fatalf("%s: %q does not name %s", q, e.Message, field)
		}
	}

	// Pages of 3: 1-3, 4-6, 7-8; the stored bytes come back as they are
	// (encoding/json would have escaped the < > & of the prompt).
	var all []protocol.LoggedEvent
	var after int64
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		var page protocol.EventsPage
		_, raw := c.do("GET", "/sessions/a/events?limit=3&after="+itoa(after), nil)
		if err := json.Unmarshal(raw, &page); err != nil {
			t.Fatalf("page %s: %v", raw, err)
		}
		all = append(all, page.Events...)
		if page.Next == nil {
			if len(page.Events) != 2 {
				t.Fatalf("last page %s", raw)
			}
			break
		}
		after = *page.Next
	}
	if len(all) != 8 || all[0].Pos != 1 || all[7].Pos != 8 || all[0].AgentSeq != 1 {
		t.Fatalf("log %+v", all)
	}
	stored, err := s.Store().Events(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	for i := range stored {
		if string(stored[i].Body) != string(all[i].Event) {
			t.Fatalf("event %d exported as %s; stored %s", i+1, all[i].Event, stored[i].Body)
		}
	}
	if got := reinclient.Chain(all, []int64{7}); len(got) != 1 || got[0] != *t1.Digest {
		t.Fatalf("recomputed %v; recorded %s", got, *t1.Digest)
	}

	cl, err := reinclient.New(s.URL(), "")
	if err != nil {
		t.Fatal(err)
	}
	v, err := cl.Verify(context.Background(), "a", 2)
	if err != nil || v.FirstMismatch != nil || v.Verified != 1 || v.Recorded != 1 || v.Events != 8 {
		t.Fatalf("verify before the edit: %+v, %v", v, err)
	}

	// Edit a stored event behind the server's back: the recorded digest
	// no longer matches the log, though the server serves the edited log.
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	res, err := raw.Exec(`UPDATE events SET body = replace(body, 'fix', 'break') WHERE session_id = 'a' AND pos = 2`)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("tamper: %v, %d rows", err, n)
	}
	v, err = cl.Verify(context.Background(), "a", 2)
	if err != nil || v.FirstMismatch == nil || v.FirstMismatch.ID != "t1" || v.Computed == *t1.Digest {
		t.Fatalf("verify after the edit: %+v, %v; want t1 to mismatch", v, err)
	}
}

// TestTurnDigestsChain: the second turn's digest covers the first's, and
// a state folded again from the log (after a restart) goes on with the
// same chain.
func TestTurnDigestsChain(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "rein.db")
	s := start(t, app.Options{DBPath: db})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", twoTurns())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = start(t, app.Options{DBPath: db})
	c = newClient(t, s)
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "i2")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("turn_completed", "turnId", "t2", "stopReason", "cancelled", "agentSeq", 9),
		ev("turn_started", "turnId", "t3", "source", "user", "agentSeq", 10),
		ev("agent_exited", "code", 1, "agentSeq", 11),
	})
	var turns []protocol.Turn
	c.must(http.StatusOK, &turns, "GET", "/sessions/a/turns", nil)
	if len(turns) != 3 || turns[1].Status != "cancelled" || turns[2].EndPos == nil || *turns[2].EndPos != 11 {
		t.Fatalf("turns %+v", turns)
	}
	for _, tr := range turns {
		if !tr.DigestRecorded {
			t.Fatalf("turn %s digest not recorded", tr.ID)
		}
	}
	cl, _ := reinclient.New(s.URL(), "")
	v, err := cl.Verify(context.Background(), "a", 0)
	if err != nil || v.FirstMismatch != nil || v.Verified != 3 {
		t.Fatalf("verify: %+v, %v", v, err)
	}
	if *turns[0].Digest == *turns[1].Digest || *turns[1].Digest == *turns[2].Digest {
		t.Fatal("digests repeat")
	}
}

// An agent that restarts its numbering uses a turn id again: each turn
// lists only its own prompt and tool calls, not those of a later turn
// with the same id.
func TestTurnsWithReusedIDsKeepTheirOwnContents(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("turn_started", "turnId", "t1", "source", "agent"),
		ev("tool_call_start", "id", "tc1", "name", "read"),
		ev("tool_call_end", "id", "tc1", "status", "completed"),
		ev("turn_completed", "turnId", "t1", "stopReason", "end_turn"),
		ev("turn_started", "turnId", "t1", "source", "user"),
		ev("user_message", "text", "second prompt"),
		ev("tool_call_start", "id", "tc2", "name", "bash"),
		ev("turn_completed", "turnId", "t1", "stopReason", "cancelled"),
	})
	var turns []protocol.Turn
	c.must(http.StatusOK, &turns, "GET", "/sessions/a/turns", nil)
	if len(turns) != 2 {
		t.Fatalf("turns %+v", turns)
	}
	first, second := turns[0], turns[1]
	if first.Prompt != nil || len(first.ToolCalls) != 1 || first.ToolCalls[0].ID != "tc1" || first.Status != "completed" {
		b, _ := json.Marshal(first)
		t.Fatalf("first t1: %s; want no prompt and tool call tc1 only", b)
	}
	if second.Prompt == nil || *second.Prompt != "second prompt" || len(second.ToolCalls) != 1 || second.ToolCalls[0].ID != "tc2" || second.ToolCalls[0].Status != "cancelled" {
		b, _ := json.Marshal(second)
		t.Fatalf("second t1: %s; want its prompt and tool call tc2 only", b)
	}
}

// digestGatedStore holds the next read of turn digests, once armed, until
// open is closed.
type digestGatedStore struct {
	*sqlite.Store
	armed   atomic.Bool
	entered chan struct{}
	open    chan struct{}
}

func (g *digestGatedStore) TurnDigests(ctx context.Context, id string) ([]store.TurnDigest, error) {
	if g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.open
	}
	return g.Store.TurnDigests(ctx, id)
}

// TestTurnsReadAtOneMoment: GET /turns reads a session's log and its
// recorded turn digests apart. Read log first, a turn that ended between
// the two reads was shown running (the log before its end) with the
// digest recorded at its end, which says it ended: a turn list that
// contradicts itself. Digests read first, every recorded digest is of an
// end the log read after holds.
func TestTurnsReadAtOneMoment(t *testing.T) {
	t.Parallel()
	g := &digestGatedStore{Store: openSQLite(t, filepath.Join(t.TempDir(), "rein.db")), entered: make(chan struct{}), open: make(chan struct{})}
	s := start(t, app.Options{Store: g})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("turn_started", "turnId", "t1", "source", "user", "agentSeq", 1)})

	g.armed.Store(true)
	got := make(chan []protocol.Turn, 1)
	go func() {
		var turns []protocol.Turn
		c.must(http.StatusOK, &turns, "GET", "/sessions/a/turns", nil)
		got <- turns
	}()
	<-g.entered
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("turn_completed", "turnId", "t1", "stopReason", "end_turn", "agentSeq", 2)})
	close(g.open)
	turns := <-got
	if len(turns) != 1 {
		t.Fatalf("turns %+v; want t1", turns)
	}
	t1 := turns[0]
	if ended := t1.Status == "completed"; ended != (t1.Digest != nil) || ended != (t1.EndPos != nil) || (t1.DigestRecorded && !ended) {
		b, _ := json.Marshal(t1)
		t.Fatalf("turn t1 contradicts itself: %s", b)
	}
}

// eventsGatedStore holds the next event log page read, once armed, until
// open is closed.
type eventsGatedStore struct {
	*sqlite.Store
	armed   atomic.Bool
	entered chan struct{}
	open    chan struct{}
}

func (g *eventsGatedStore) EventsAfter(ctx context.Context, id string, after int64, limit, maxBytes int) ([]store.Event, bool, error) {
	if g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.open
	}
	return g.Store.EventsAfter(ctx, id, after, limit, maxBytes)
}

// TestEventLogPageOfADeletedSession: GET /sessions/:id/events checks the
// session, then reads the page apart. A session deleted between the two
// was answered 200 {"events":[],"next":null}: "the end of the log, and
// only there", so a client exporting the log page by page ended with a
// short log it took for the whole. It is 404, as for any request after
// the delete.
func TestEventLogPageOfADeletedSession(t *testing.T) {
	t.Parallel()
	g := &eventsGatedStore{Store: openSQLite(t, filepath.Join(t.TempDir(), "rein.db")), entered: make(chan struct{}), open: make(chan struct{})}
	s := start(t, app.Options{Store: g})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", twoTurns())

	g.armed.Store(true)
	type answer struct {
		status int
		body   []byte
	}
	got := make(chan answer, 1)
	go func() {
		code, b := c.do("GET", "/sessions/a/events?after=2&limit=2", nil)
		got <- answer{code, b}
	}()
	<-g.entered
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil)
	close(g.open)
	if a := <-got; a.status != http.StatusNotFound {
		t.Fatalf("a page of a session deleted while it was read: %d %s; want 404", a.status, a.body)
	}
}

// TestPagesNameTheirSession: a client reads the artifacts and the event
// log a page at a time, each page its own request, resuming from the
// last one's next. A session deleted and created again under its id
// between two pages went on with the new session's artifacts (or log
// entries) above that cursor, laid over the old one's, and nothing in the
// answers told the two sessions apart. Each page's 200 now carries
// Rein-Session-Created, the createdAt of the session it was read from, as
// the artifact stream's does, so the client starts afresh when it changed.
func TestPagesNameTheirSession(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := start(t, app.Options{Now: clock.Now})
	c := newClient(t, s)
	say := func(texts ...string) {
		t.Helper()
		var evs []any
		for i, text := range texts {
			evs = append(evs, ev("text_delta", "id", fmt.Sprint("m", i), "delta", text))
		}
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", evs)
	}
	created := func(path string) string {
		t.Helper()
		code, body, h := c.exchange("GET", path, nil)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		return h.Get(protocol.HeaderSessionCreated)
	}
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	say("old one", "old two")
	old := itoa(c.session("a").CreatedAt)
	for _, p := range []string{"/sessions/a/artifacts?limit=1", "/sessions/a/events?limit=1"} {
		if got := created(p); got != old {
			t.Fatalf("GET %s: %s %q; want %s", p, protocol.HeaderSessionCreated, got, old)
		}
	}
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil)
	clock.Add(time.Millisecond)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	say("new one", "new two", "new three")
	now := itoa(c.session("a").CreatedAt)
	for _, p := range []string{"/sessions/a/artifacts?after=1&limit=1", "/sessions/a/events?after=1&limit=1"} {
		if got := created(p); got != now || got == old {
			t.Fatalf("GET %s after the session was created again: %s %q; want the new session's %s (the old one's was %s)", p, protocol.HeaderSessionCreated, got, now, old)
		}
	}
}
