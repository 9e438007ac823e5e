package server_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/internal/sqlite"
	"github.com/rein-ai/rein/server/store"
)

// A client that drops its connection and resumes with Last-Event-ID ends
// up with exactly the server's artifacts: nothing lost, nothing applied
// twice, including an update to an older artifact made while it was away.
func TestArtifactStreamResume(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	post := func(events ...any) {
		t.Helper()
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", events)
	}
	post(ev("turn_started", "turnId", "t1", "source", "user"),
		ev("user_message", "text", "run the tests"),
		ev("tool_call_start", "id", "tool1", "name", "bash", "input", map[string]any{"cmd": "go test"}))

	m := newModel(t)
	st := c.stream("/sessions/a/stream")
	m.readSnapshot(st)
	if len(m.arts) != 3 || m.rev == 0 {
		t.Fatalf("snapshot: %d artifacts at rev %d", len(m.arts), m.rev)
	}
	m.equal(c, "a")

	// Live: deltas of one batch arrive coalesced, then more.
	post(ev("tool_output_delta", "id", "tool1", "delta", "ok "), ev("tool_output_delta", "id", "tool1", "delta", "pkg"))
	post(ev("text_delta", "delta", "Running"))
	m.readUntilRev(st, storedRev(t, s, "a"))
	m.equal(c, "a")

	// The client goes away. Meanwhile the older tool call finishes after
	// a newer text block changed, and a new artifact appears.
	st.close()
	post(ev("text_delta", "delta", " the tests"))
	post(ev("tool_call_end", "id", "tool1", "status", "completed", "output", "ok pkg"))
	post(ev("text_end"), ev("turn_completed", "turnId", "t1", "stopReason", "end_turn"))
	post(ev("notice", "level", "info", "message", "done"))

	st2 := c.stream("/sessions/a/stream", "Last-Event-ID", m.lastID)
	resumeFrom := atoi(t, m.lastID)
	for {
		e := st2.next()
		if e.Event == protocol.SSEArtifactSnapshot && atoi(t, e.ID) <= resumeFrom {
			t.Fatalf("resume replayed rev %s, which the client had (Last-Event-ID %d)", e.ID, resumeFrom)
		}
		if m.apply(e) {
			break
		}
	}
	m.equal(c, "a")
	if m.arts[3].String("status") != "completed" {
		t.Fatalf("the older tool call's update was lost: %+v", m.arts[3])
	}

	// And live after a resume continues without gaps.
	post(ev("turn_started", "turnId", "t2", "source", "user"), ev("user_message", "text", "again"))
	m.readUntilRev(st2, storedRev(t, s, "a"))
	m.equal(c, "a")

	// Resuming when nothing changed replays nothing.
	st2.close()
	st3 := c.stream("/sessions/a/stream", "Last-Event-ID", m.lastID)
	if e := st3.next(); e.Event != protocol.SSESnapshotComplete {
		t.Fatalf("resume at the head got %+v; want snapshot_complete", e)
	}
}

// TestArtifactStreamFullReplay: snapshot_complete says whether the replay
// held every artifact. A client whose Last-Event-ID is above the session's
// revision (the session was deleted and created again, or the database
// restored from an older backup) gets every artifact and "full": dropping
// what the replay did not send, it holds exactly the session's artifacts,
// none of the history that is gone.
func TestArtifactStreamFullReplay(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", append([]any{
		ev("turn_started", "turnId", "t1", "source", "user"),
		ev("user_message", "text", "delete the tests")}, tools(1, 4)...))

	m := newModel(t)
	m.readSnapshot(c.stream("/sessions/a/stream"))
	if !m.full {
		t.Error("a replay without Last-Event-ID is not marked full")
	}
	m.equal(c, "a")
	old := m.lastID

	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", tools(5, 1))
	resumed := newModel(t)
	resumed.readSnapshot(c.stream("/sessions/a/stream", "Last-Event-ID", old))
	if resumed.full || len(resumed.arts) != 1 {
		t.Errorf("a resume replayed %d artifacts, full=%v; want the 1 new one, not full", len(resumed.arts), resumed.full)
	}

	// The same id, a shorter history: revisions the client saw are gone.
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("turn_started", "turnId", "t1", "source", "user"),
		ev("user_message", "text", "keep the tests")})
	if storedRev(t, s, "a") >= atoi(t, m.lastID) {
		t.Fatalf("the new session's revision %d is not below the client's %s: the test needs a shorter history", storedRev(t, s, "a"), m.lastID)
	}
	held := len(m.arts)
	m.readSnapshot(c.stream("/sessions/a/stream", "Last-Event-ID", m.lastID))
	if !m.full {
		t.Errorf("a replay for a Last-Event-ID above the session's revision is not marked full")
	}
	m.equal(c, "a") // fails if the client kept any of the old history
	t.Logf("held %d artifacts of the old history; %d after the full replay", held, len(m.arts))
}

func storedRev(t testing.TB, s *app.App, id string) int64 {
	t.Helper()
	settle(t, s, id)
	var rev int64
	arts, err := s.Store().Artifacts(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range arts {
		rev = max(rev, a.Rev)
	}
	return rev
}

// Changes committed between subscribing and reading the snapshot are sent
// once: the snapshot has them, the live copies are skipped by revision.
func TestArtifactStreamUnderLoad(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			status, b := c.do("POST", "/sessions/a/events", []any{
				ev("text_delta", "id", fmt.Sprintf("b%d", i%7), "delta", "x"),
				ev("tool_call_start", "id", fmt.Sprintf("t%d", i), "name", "sh"),
			})
			if status != http.StatusAccepted {
				t.Errorf("post %d: %d %s", i, status, b)
				return
			}
		}
	}()
	var models []*model
	var streams []*sseStream
	for range 5 {
		m := newModel(t)
		st := c.stream("/sessions/a/stream")
		m.readSnapshot(st)
		models, streams = append(models, m), append(streams, st)
	}
	<-done
	rev := storedRev(t, s, "a")
	for i, m := range models {
		m.readUntilRev(streams[i], rev)
		m.equal(c, "a")
	}
}

func TestSessionStream(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/old", `{"project":"p"}`)
	all := c.stream("/sessions/stream")
	onlyP := c.stream("/sessions/stream?project=p")
	for _, st := range []*sseStream{all, onlyP} {
		e := st.next()
		if e.Event != protocol.SSESessionSnapshot || !strings.Contains(e.Data, `"id":"old"`) {
			t.Fatalf("snapshot: %+v", e)
		}
		// The snapshot is every session: full says so, as the artifact
		// stream's full replay does, so a client drops what it held.
		if e := st.next(); e.Event != protocol.SSESnapshotComplete || e.Data != `{"rev":0,"full":true}` {
			t.Fatalf("after snapshot: %+v; want snapshot_complete {\"rev\":0,\"full\":true}", e)
		}
	}
	c.must(http.StatusCreated, nil, "POST", "/sessions/other", nil)
	c.must(http.StatusCreated, nil, "POST", "/sessions/mine", `{"project":"p"}`)
	if e := all.next(); e.Event != protocol.SSESessionCreated || !strings.Contains(e.Data, `"id":"other"`) {
		t.Fatalf("all: %+v", e)
	}
	for _, st := range []*sseStream{all, onlyP} {
		if e := st.next(); e.Event != protocol.SSESessionCreated || !strings.Contains(e.Data, `"id":"mine"`) {
			t.Fatalf("created: %+v", e)
		}
	}
	// A heartbeat is not broadcast; a summary and a status are, once.
	cmds := c.stream("/sessions/mine/commands")
	defer cmds.close()
	c.must(http.StatusAccepted, nil, "POST", "/sessions/mine/events", ev("heartbeat"))
	c.must(http.StatusAccepted, nil, "POST", "/sessions/mine/events", []any{
		ev("agent_started", "agent", map[string]any{"name": "demo", "protocol": "native"}),
		ev("session_info", "title", "Fixing"),
	})
	c.must(http.StatusAccepted, nil, "POST", "/sessions/mine/events", ev("session_info", "title", "Fixing"))
	c.must(http.StatusAccepted, nil, "POST", "/sessions/mine/events", ev("session_info", "title", "Fixed"))
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/mine", nil)
	for _, st := range []*sseStream{all, onlyP} {
		var got []string
		for range 4 {
			e := st.next()
			got = append(got, e.Event+" "+e.Data)
		}
		want := []string{
			`session_updated {"id":"mine","fields":{"status":"live"}}`,
			`session_updated {"id":"mine","fields":{"status":"idle","summary":"Fixing"}}`,
			`session_updated {"id":"mine","fields":{"summary":"Fixed"}}`,
			`session_removed {"id":"mine"}`,
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("session stream got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// A client that never reads is dropped without delaying ingest or a
// normal client, which receives everything.
func TestStalledSubscriber(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	s := start(t, app.Options{WriteTimeout: 500 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)

	raw, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(s.Port())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	// A small receive window makes the server's socket fill fast.
	_ = raw.(*net.TCPConn).SetReadBuffer(4 << 10)
	if _, err := io.WriteString(raw, "GET /sessions/a/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Read up to snapshot_complete, so the raw client is subscribed; from
	// then on it reads nothing.
	br := bufio.NewReader(raw)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(l, "event: "+protocol.SSESnapshotComplete) {
			break
		}
	}
	m := newModel(t)
	normal := c.stream("/sessions/a/stream")
	m.readSnapshot(normal)

	// 100 tool calls with 200 KiB of output each: 20 MiB, more than the
	// hub queue (8 MiB) and the socket buffers of the stalled client hold.
	chunk := strings.Repeat("x", 200<<10)
	var rev int64
	for i := range 100 {
		id := fmt.Sprintf("tool%d", i)
		var res protocol.EventsAccepted
		c.must(http.StatusAccepted, &res, "POST", "/sessions/a/events", []any{
			ev("tool_call_start", "id", id, "name", "cat"),
			ev("tool_output_delta", "id", id, "delta", chunk),
		})
		// Each post has committed; the normal client keeps pace.
		rev += 3 // created, status running, output appended
		m.readUntilRev(normal, rev)
	}
	if len(m.arts) != 100 || m.arts[100].String("output") != chunk {
		t.Fatalf("normal client has %d artifacts", len(m.arts))
	}
	m.equal(c, "a")
	// Dropped by the overflow (20 MiB against an 8 MiB queue) or, on a
	// loaded machine where the queue drains into socket buffers slowly,
	// by the write deadline: wait for it rather than race it.
	eventually(t, "the stalled subscriber is dropped", func() bool { return server.Subscribers(s.Server, "a") == 1 })
	// The operator learns of it: a log line with the session, a count.
	eventually(t, "the drop is logged and counted", func() bool {
		m := scrape(t, s.URL()+"/metrics")
		dropped := m[`rein_stream_clients_dropped_total{reason="overflow",stream="artifacts"}`] + m[`rein_stream_clients_dropped_total{reason="write_timeout",stream="artifacts"}`]
		return dropped == 1 && strings.Contains(logs.String(), "session=a stream=artifacts reason=")
	})
	// Its handler, blocked in a write, gives up at the write deadline;
	// Close (in Cleanup) waits for it.
}

// One batch whose output alone is over the per-client queue (8 MiB, here
// with --max-body raised to take it) reaches a follower that keeps up:
// its one artifact_updated is not a reason to drop it, as it was for
// every follower of the session, batch after batch.
func TestArtifactStreamLiveMessageOverTheQueue(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{MaxBody: 16 << 20})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("tool_call_start", "id", "c1", "name", "make")})
	m := newModel(t)
	st := c.stream("/sessions/a/stream")
	m.readSnapshot(st)
	delta := strings.Repeat(strings.Repeat("x", 255)+"\n", protocol.MaxTextLen/256)
	batch := make([]any, 36) // 9 MiB
	for i := range batch {
		batch[i] = ev("tool_output_delta", "id", "c1", "delta", delta)
	}
	for range 2 {
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", batch)
		m.readUntilRev(st, storedRev(t, s, "a"))
	}
	m.equal(c, "a")
}

func TestPing(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{PingInterval: 20 * time.Millisecond})
	c := newClient(t, s)
	st := c.stream("/sessions/stream")
	if e := st.next(); e.Event != protocol.SSESnapshotComplete {
		t.Fatalf("got %+v", e)
	}
	// Nothing else happens on this stream: the next line is a ping.
	line, err := st.r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if line != ": ping\n" {
		t.Fatalf("comment %q; want \": ping\"", line)
	}
}

func TestSnapshotSendsStoredBytes(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", ev("plan_updated", "entries", []any{map[string]any{"content": "b", "status": "pending"}}))
	arts, err := s.Store().Artifacts(t.Context(), "a")
	if err != nil || len(arts) != 1 {
		t.Fatal(arts, err)
	}
	st := c.stream("/sessions/a/stream")
	e := st.next()
	if e.Data != `{"artifact":`+string(arts[0].Body)+`}` {
		t.Fatalf("snapshot data %s; stored %s", e.Data, arts[0].Body)
	}
	var p protocol.ArtifactPayload
	if err := json.Unmarshal([]byte(e.Data), &p); err != nil {
		t.Fatal(err)
	}
}

// pageGatedStore holds the next artifact page read, once armed, until
// open is closed: a test changes the session between an artifact
// stream's opening and its first read.
type pageGatedStore struct {
	*sqlite.Store
	armed   atomic.Bool
	skip    atomic.Int32 // pages read before the one held
	entered chan struct{}
	open    chan struct{}
}

func newPageGatedStore(t *testing.T) *pageGatedStore {
	return &pageGatedStore{Store: openSQLite(t, filepath.Join(t.TempDir(), "rein.db")), entered: make(chan struct{}), open: make(chan struct{})}
}

func (g *pageGatedStore) ArtifactsPage(ctx context.Context, id string, after int64, limit, maxBytes int) (store.Snapshot, error) {
	if g.armed.Load() && g.skip.Add(-1) < 0 && g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.open
	}
	return g.Store.ArtifactsPage(ctx, id, after, limit, maxBytes)
}

// TestArtifactStreamSessionCreatedIsTheReplayed: the artifact stream's
// Rein-Session-Created names the session whose artifacts it replays. A
// session deleted and created again between the stream's opening and its
// replay's first read used to get the deleted one's createdAt (read
// before the replay) over the new one's artifacts: a client resuming
// with Last-Event-ID took the new session's changes as the old one's.
func TestArtifactStreamSessionCreatedIsTheReplayed(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	g := newPageGatedStore(t)
	s := start(t, app.Options{Store: g, Now: clock.Now})
	c := newClient(t, s)
	say := func(text string) {
		t.Helper()
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events",
			fmt.Sprintf(`[{"type":"text_delta","id":"m1","delta":%q,"agentSeq":1}]`, text))
	}
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{}`)
	say("the old session's words")
	old := c.session("a").CreatedAt

	g.armed.Store(true)
	opened := make(chan *sseStream, 1)
	go func() {
		st, status := c.tryStream("/sessions/a/stream")
		if status != http.StatusOK {
			t.Errorf("artifact stream: status %d; want 200", status)
		}
		opened <- st
	}()
	<-g.entered
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil)
	clock.Add(time.Millisecond)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{}`)
	say("the new session's words")
	created := c.session("a").CreatedAt
	close(g.open)

	st := <-opened
	if st == nil {
		t.FailNow()
	}
	var replayed []string
	for {
		ev := st.next()
		if ev.Event == protocol.SSESnapshotComplete {
			break
		}
		replayed = append(replayed, ev.Data)
	}
	if got := st.resp.Header.Get(protocol.HeaderSessionCreated); got != itoa(created) {
		t.Errorf("%s %s (the deleted session's is %d) over the replay %q; want the new session's %d",
			protocol.HeaderSessionCreated, got, old, replayed, created)
	}
	if len(replayed) != 1 || !strings.Contains(replayed[0], "the new session's words") {
		t.Errorf("replay %q; want the new session's one message", replayed)
	}
}

// TestArtifactStreamEndsWhenTheSessionIsCreatedAgainMidReplay: a replay
// read a page at a time whose session is deleted and created again
// between two pages ends there, instead of going on with the new
// session's artifacts under the old one's Rein-Session-Created.
func TestArtifactStreamEndsWhenTheSessionIsCreatedAgainMidReplay(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	g := newPageGatedStore(t)
	s := start(t, app.Options{Store: g, Now: clock.Now, ReplayPage: 1})
	c := newClient(t, s)
	seq := 0
	say := func(id, text string) {
		t.Helper()
		seq++
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events",
			fmt.Sprintf(`[{"type":"text_delta","id":%q,"delta":%q,"agentSeq":%d}]`, id, text, seq))
	}
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{}`)
	say("m1", "old one")
	say("m2", "old two")
	say("m3", "old three")

	g.skip.Store(1)
	g.armed.Store(true)
	st := c.stream("/sessions/a/stream")
	first := st.next()
	<-g.entered
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil)
	clock.Add(time.Millisecond)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{}`)
	say("n1", "new one")
	say("n2", "new two")
	say("n3", "new three")
	close(g.open)

	replayed := []string{first.Data}
	for {
		ev, err := st.read()
		if err != nil {
			break
		}
		replayed = append(replayed, ev.Event+" "+ev.Data)
	}
	if got := st.resp.Header.Get(protocol.HeaderSessionCreated); len(replayed) != 1 || !strings.Contains(replayed[0], "old one") {
		t.Errorf("under %s %s: %q; want the old session's first page, then the stream's end", protocol.HeaderSessionCreated, got, replayed)
	}
}

// TestTicketOfADeletedNamesakeOpensNoStream: a browser's EventSource
// reconnects by itself with Last-Event-ID and the URL it opened, ticket
// included, and a page cannot read Rein-Session-Created on that
// reconnection. A ticket names the createdAt of the session it was issued
// for, so the reconnection of a page that followed a session since
// deleted and created again under its id is refused (404), with or
// without authentication: the page then gets a new ticket and a full
// replay of the new session, instead of the new session's changes above
// its revision laid over the old session's artifacts.
func TestTicketOfADeletedNamesakeOpensNoStream(t *testing.T) {
	t.Parallel()
	for _, token := range []string{"", testAPIToken} {
		t.Run(map[string]string{"": "auth off", testAPIToken: "auth on"}[token], func(t *testing.T) {
			clock := newFakeClock()
			s := start(t, app.Options{APIToken: token, Now: clock.Now})
			c := newClient(t, s)
			var auth []string
			if token != "" {
				auth = bearerHdr(token)
			}
			seq := 0
			say := func(id, text string) {
				t.Helper()
				seq++
				c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events",
					fmt.Sprintf(`[{"type":"text_delta","id":%q,"delta":%q,"agentSeq":%d}]`, id, text, seq), auth...)
			}
			var tk struct{ Ticket string }
			c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{}`, auth...)
			say("m1", "old one")
			c.must(http.StatusOK, &tk, "POST", "/sessions/a/stream-ticket", nil, auth...)
			path := "/sessions/a/stream?ticket=" + url.QueryEscape(tk.Ticket)
			st := c.stream(path, "Last-Event-ID", "1")
			st.close()

			c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil, auth...)
			clock.Add(time.Millisecond)
			c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{}`, auth...)
			say("n1", "new one")
			say("n2", "new two")
			if st, status := c.tryStream(path, "Last-Event-ID", "1"); status != http.StatusNotFound {
				if st != nil {
					st.close()
				}
				t.Fatalf("the old page's reconnection with its ticket: status %d; want 404", status)
			}
			// A new ticket opens the new session's stream.
			c.must(http.StatusOK, &tk, "POST", "/sessions/a/stream-ticket", nil, auth...)
			c.stream("/sessions/a/stream?ticket=" + url.QueryEscape(tk.Ticket)).close()
		})
	}
}

// A session whose log folds to a revision below the one stored (the rules
// of a newer build make fewer changes of the same events, as when a late
// tool update no longer reopens a tool) goes on above the stored one:
// clients hold revisions up to it, and a change numbered at or below it
// would be skipped by every client resuming from there.
func TestFoldBehindTheStoredRevisionGoesOnAboveIt(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "rein.db")
	s := start(t, app.Options{DBPath: db})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{}`)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `[{"type":"text_delta","id":"m1","delta":"one","agentSeq":1}]`)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The stored revision as a build whose fold made ten more changes
	// left it.
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	var stored int64
	if err := raw.QueryRow(`UPDATE sessions SET rev = rev + 10 WHERE id = 'a' RETURNING rev`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	s = start(t, app.Options{DBPath: db})
	c = newClient(t, s)
	st := c.stream("/sessions/a/stream", "Last-Event-ID", itoa(stored))
	for st.next().Event != protocol.SSESnapshotComplete {
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `[{"type":"text_delta","id":"m2","delta":"two","agentSeq":2}]`)
	ev := st.next()
	if rev, _ := strconv.ParseInt(ev.ID, 10, 64); rev <= stored {
		t.Fatalf("the next change %s %s has revision %s; want one above the stored %d, which the client holds", ev.Event, ev.Data, ev.ID, stored)
	}
}
