package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/internal/sqlite"
	"github.com/rein-ai/rein/server/pgtest"
	"github.com/rein-ai/rein/server/store"
)

// pageSizeStore records the artifact bodies each page read returns: what
// a replay or a GET /artifacts holds in memory at once.
type pageSizeStore struct {
	*sqlite.Store
	pageRecorder
}

// pageRecorder records the body sizes of the artifacts each read returns.
type pageRecorder struct {
	mu    sync.Mutex
	pages [][]int // body sizes, one list per page read
}

func (p *pageRecorder) record(arts []store.Artifact) {
	sizes := make([]int, len(arts))
	for i, a := range arts {
		sizes[i] = len(a.Body)
	}
	p.mu.Lock()
	p.pages = append(p.pages, sizes)
	p.mu.Unlock()
}

func (p *pageSizeStore) ArtifactsPage(ctx context.Context, id string, after int64, limit, maxBytes int) (store.Snapshot, error) {
	snap, err := p.Store.ArtifactsPage(ctx, id, after, limit, maxBytes)
	p.record(snap.Artifacts)
	return snap, err
}

func (p *pageSizeStore) ArtifactsBySeq(ctx context.Context, id string, after int64, limit, maxBytes int) ([]store.Artifact, bool, error) {
	list, more, err := p.Store.ArtifactsBySeq(ctx, id, after, limit, maxBytes)
	p.record(list)
	return list, more, err
}

// wholeReadStore is a pageSizeStore that records a read of a session's
// whole list as one page too, so a reader that still reads whole is
// caught.
type wholeReadStore struct{ pageSizeStore }

func (p *wholeReadStore) Artifacts(ctx context.Context, id string) ([]store.Artifact, error) {
	list, err := p.Store.Artifacts(ctx, id)
	p.record(list)
	return list, err
}

// taken returns the pages read since the last call.
func (p *pageRecorder) taken() [][]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.pages
	p.pages = nil
	return out
}

// checkPages fails unless every page read held its bodies within the
// byte budget, or a single artifact (a page always makes progress).
func checkPages(t *testing.T, what string, pages [][]int) {
	t.Helper()
	if len(pages) == 0 {
		t.Fatalf("%s: no page read", what)
	}
	for i, sizes := range pages {
		sum := 0
		for _, n := range sizes {
			sum += n
		}
		if len(sizes) > 1 && sum > server.DefaultReplayPageBytes {
			t.Errorf("%s: page %d held %d artifacts of %d bytes together; want at most %d bytes or one artifact", what, i, len(sizes), sum, server.DefaultReplayPageBytes)
		}
	}
}

// bigSession creates session a with n assistant texts of size bytes each,
// seq 1 to n, and returns the session's revision.
func bigSession(t *testing.T, c *client, n, size int) {
	t.Helper()
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{}`)
	text := strings.Repeat("x", size)
	for i := 1; i <= n; i++ {
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events",
			fmt.Sprintf(`[{"type":"text_delta","id":"m%d","delta":%q,"agentSeq":%d}]`, i, text, i))
	}
}

// TestReplayPagesBoundedByBytes: a replay page was bounded by its count
// alone (128 artifacts), so a session of large artifacts (tool output of
// megabytes each) put 128 of them in memory at once for every follower
// replaying it. A page now also stops at Options.ReplayPageBytes of
// bodies (one artifact at least), and the replay still sends every
// artifact once and ends at the session's revision.
func TestReplayPagesBoundedByBytes(t *testing.T) {
	t.Parallel()
	p := &pageSizeStore{Store: openSQLite(t, filepath.Join(t.TempDir(), "rein.db"))}
	s := start(t, app.Options{Store: p})
	c := newClient(t, s)
	const n, size = 12, 250 << 10 // 3 MiB in all, four 1 MiB pages
	bigSession(t, c, n, size)
	p.taken()

	for _, after := range []int64{0, 3} {
		var hdr []string
		if after > 0 {
			hdr = []string{"Last-Event-ID", itoa(after)}
		}
		st := c.stream("/sessions/a/stream", hdr...)
		seen := map[int64]bool{}
		for {
			ev := st.next()
			if ev.Event == protocol.SSESnapshotComplete {
				var done protocol.SnapshotComplete
				if err := json.Unmarshal([]byte(ev.Data), &done); err != nil {
					t.Fatal(err)
				}
				if want := storedRev(t, s, "a"); done.Rev != want {
					t.Errorf("after %d: snapshot_complete at %d; want the session's revision %d", after, done.Rev, want)
				}
				break
			}
			var snap struct {
				Artifact protocol.Artifact `json:"artifact"`
			}
			if err := json.Unmarshal([]byte(ev.Data), &snap); err != nil {
				t.Fatal(err)
			}
			if seen[snap.Artifact.Seq] {
				t.Errorf("after %d: seq %d replayed twice", after, snap.Artifact.Seq)
			}
			seen[snap.Artifact.Seq] = true
		}
		st.close()
		if want := n - int(after); len(seen) != want {
			t.Errorf("after %d: replayed %d artifacts; want %d", after, len(seen), want)
		}
		checkPages(t, fmt.Sprintf("stream after %d", after), p.taken())
	}

	// GET /artifacts, the whole list by seq, reads by the same budget.
	var all []json.RawMessage
	c.must(http.StatusOK, &all, "GET", "/sessions/a/artifacts", nil)
	if len(all) != n {
		t.Errorf("GET /artifacts: %d artifacts; want %d", len(all), n)
	}
	checkPages(t, "GET /artifacts", p.taken())

	// And its pages by revision: shorter than limit when the bodies are
	// large, with a cursor to the rest.
	got := 0
	for after, pages := int64(0), 0; ; pages++ {
		var page struct {
			Artifacts []json.RawMessage `json:"artifacts"`
			Next      *int64            `json:"next"`
		}
		c.must(http.StatusOK, &page, "GET", "/sessions/a/artifacts?limit=500&after="+itoa(after), nil)
		got += len(page.Artifacts)
		if page.Next == nil {
			break
		}
		if pages > n {
			t.Fatal("GET /artifacts?after: the pages do not end")
		}
		after = *page.Next
	}
	if got != n {
		t.Errorf("GET /artifacts?after: %d artifacts over the pages; want %d", got, n)
	}
	checkPages(t, "GET /artifacts?after", p.taken())
}

// TestStartReadsApprovalsInPages: the start fills the approvals inbox
// from the stored artifacts of each session that may hold a pending
// request, and read each such session's artifacts whole (tool output of
// up to --max-session-bytes) for the few permissions among them. It
// reads them a page at a time now, and the inbox still names the
// request's tool.
func TestStartReadsApprovalsInPages(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rein.db")
	s := start(t, app.Options{DBPath: path})
	c := newClient(t, s)
	const n, size = 12, 250 << 10 // 3 MiB in all
	bigSession(t, c, n, size)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permissionEvents("t1", "tc1", "r1", n+1))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	p := &wholeReadStore{pageSizeStore{Store: openSQLite(t, path)}}
	c = newClient(t, start(t, app.Options{Store: p}))
	checkPages(t, "start", p.taken())
	var list []protocol.Approval
	c.must(http.StatusOK, &list, "GET", "/approvals", nil)
	if len(list) != 1 || list[0].RequestID != "r1" || list[0].Tool == nil || list[0].Tool.Name != "bash" {
		t.Fatalf("after restart: %+v; want r1 naming its tool bash", list)
	}
}

// pagedBlindStore is a blindStore that records the artifact bodies each
// of its reads returns.
type pagedBlindStore struct {
	*blindStore
	pageRecorder
}

func (p *pagedBlindStore) ArtifactsSince(ctx context.Context, id string, after int64) (store.Snapshot, error) {
	snap, err := p.blindStore.ArtifactsSince(ctx, id, after)
	p.record(snap.Artifacts)
	return snap, err
}

func (p *pagedBlindStore) ArtifactsPage(ctx context.Context, id string, after int64, limit, maxBytes int) (store.Snapshot, error) {
	snap, err := p.blindStore.ArtifactsPage(ctx, id, after, limit, maxBytes)
	p.record(snap.Artifacts)
	return snap, err
}

func (p *pagedBlindStore) ArtifactsBySeq(ctx context.Context, id string, after int64, limit, maxBytes int) ([]store.Artifact, bool, error) {
	list, more, err := p.blindStore.ArtifactsBySeq(ctx, id, after, limit, maxBytes)
	p.record(list)
	return list, more, err
}

// TestReplicasFallbackReadsInPages: a replica that cannot relay another's
// change records (the change log forgot them) sent its followers the
// changed artifacts whole, read at once in its writer: a session whose
// large artifacts all changed meanwhile (3 MiB here, up to the session's
// byte cap) was read into memory in one piece, however many. It now reads
// a page (bounded in bytes) and, when more changed than one page holds,
// ends its followers' streams instead: they resume with Last-Event-ID,
// replaying page by page, and end up exactly as the session is.
func TestReplicasFallbackReadsInPages(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	a := start(t, app.Options{DBPath: dsn})
	pg := openPostgres(t, dsn)
	f := &pagedBlindStore{blindStore: &blindStore{Store: pg}}
	b := start(t, app.Options{Store: f})
	ca, cb := newClient(t, a), newClient(t, b)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `[{"type":"text_delta","id":"m0","delta":"hi","agentSeq":100}]`)
	m := newModel(t)
	st := cb.stream("/sessions/a/stream")
	m.readSnapshot(st)
	m.readUntilRev(st, storedRev(t, a, "a"))

	f.fail.Store(true)
	text := strings.Repeat("x", 250<<10)
	for i := 1; i <= 12; i++ {
		ca.must(http.StatusAccepted, nil, "POST", "/sessions/a/events",
			fmt.Sprintf(`[{"type":"text_delta","id":"m%d","delta":%q,"agentSeq":%d}]`, i, text, 100+i))
	}
	forgetChangeBatches(t, dsn)
	f.taken()
	f.fail.Store(false)
	f.changed.Load().(func([]string))(nil)

	want := storedRev(t, a, "a")
	for m.lastID == "" || atoi(t, m.lastID) < want {
		ev, err := st.read()
		if err != nil {
			// Ended: resume, as every client does.
			st = cb.stream("/sessions/a/stream", "Last-Event-ID", m.lastID)
			m.readSnapshot(st)
			continue
		}
		m.apply(ev)
	}
	m.equal(cb, "a")
	checkPages(t, "replica b", f.taken())
}

// TestEventLogPagesBoundedByBytes: a page of GET /sessions/:id/events was
// bounded by its count alone (up to 5000 entries), so one request for a
// session of large events (tool output, up to protocol.MaxEventBytes
// each) read gigabytes into memory and copied them again into the
// response. A page now stops at Options.ReplayPageBytes of event bodies
// (one entry at least, however large), next says where the rest starts,
// and the pages together are the stored log exactly, each entry once.
func TestEventLogPagesBoundedByBytes(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	const n, size = 12, 250 << 10 // 3 MiB in all
	bigSession(t, c, n, size)
	stored, err := s.Store().Events(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != n {
		t.Fatalf("%d events stored; want %d", len(stored), n)
	}

	var all []protocol.LoggedEvent
	var after int64
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatal("the pages do not end")
		}
		var page protocol.EventsPage
		c.must(http.StatusOK, &page, "GET", "/sessions/a/events?limit=5000&after="+itoa(after), nil)
		sum := 0
		for _, e := range page.Events {
			sum += len(e.Event)
		}
		if len(page.Events) > 1 && sum > server.DefaultReplayPageBytes {
			t.Errorf("page after %d held %d events of %d bytes together; want at most %d bytes or one event", after, len(page.Events), sum, server.DefaultReplayPageBytes)
		}
		if len(page.Events) == 0 && page.Next != nil {
			t.Fatalf("an empty page after %d names a next page", after)
		}
		all = append(all, page.Events...)
		if page.Next == nil {
			break
		}
		if len(page.Events) == 0 || *page.Next != page.Events[len(page.Events)-1].Pos {
			t.Fatalf("page after %d: next %d is not its last position", after, *page.Next)
		}
		after = *page.Next
	}
	if len(all) != len(stored) {
		t.Fatalf("the pages hold %d events; the log %d", len(all), len(stored))
	}
	for i, e := range stored {
		if all[i].Pos != e.Pos || all[i].AgentSeq != e.AgentSeq || all[i].Instance != e.Instance || string(all[i].Event) != string(e.Body) {
			t.Fatalf("entry %d paged as pos %d agentSeq %d; stored pos %d agentSeq %d (or other bytes)", i, all[i].Pos, all[i].AgentSeq, e.Pos, e.AgentSeq)
		}
	}
}

// logReadStore records the event bodies each log read of a SQLite store
// returns, a read of the whole log as one page.
type logReadStore struct {
	*sqlite.Store
	mu    sync.Mutex
	pages [][]int // body sizes, one list per read
}

func (p *logReadStore) record(list []store.Event) {
	sizes := make([]int, len(list))
	for i, e := range list {
		sizes[i] = len(e.Body)
	}
	p.mu.Lock()
	p.pages = append(p.pages, sizes)
	p.mu.Unlock()
}

func (p *logReadStore) Events(ctx context.Context, id string) ([]store.Event, error) {
	list, err := p.Store.Events(ctx, id)
	p.record(list)
	return list, err
}

func (p *logReadStore) EventsAfter(ctx context.Context, id string, after int64, limit, maxBytes int) ([]store.Event, bool, error) {
	list, more, err := p.Store.EventsAfter(ctx, id, after, limit, maxBytes)
	p.record(list)
	return list, more, err
}

// TestTurnsReadLogInPages: GET /sessions/:id/turns (and /turns/:turnId)
// read the session's whole event log at once to fold it, up to
// --max-session-bytes (1 GiB) in memory beside the fold for each request.
// It folds the log a page at a time now (Options.ReplayPage entries, at
// most Options.ReplayPageBytes of them), and the turns are the same
// whether a page holds one event or the whole log.
func TestTurnsReadLogInPages(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rein.db")
	s := start(t, app.Options{DBPath: path})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{}`)
	text := strings.Repeat("x", 250<<10)
	seq := 0
	post := func(evs ...any) {
		t.Helper()
		for i := range evs {
			seq++
			evs[i].(map[string]any)["agentSeq"] = seq
		}
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", unescaped(t, evs))
	}
	// Four turns of 1 MiB of output each (the id t1 used twice, as an
	// agent that restarts does), the last still running.
	for i, id := range []string{"t1", "t2", "t1", "t3"} {
		tool := fmt.Sprintf("tc%d", i)
		post(ev("turn_started", "turnId", id, "source", "user", "promptId", fmt.Sprintf("p%d", i)),
			ev("user_message", "text", fmt.Sprintf("prompt %d", i), "turnId", id),
			ev("tool_call_start", "id", tool, "name", "bash", "kind", "execute", "title", "make"))
		for range 2 {
			post(ev("tool_output_delta", "id", tool, "delta", text))
		}
		post(ev("tool_call_end", "id", tool, "status", "completed"))
		for range 2 {
			post(ev("text_delta", "delta", text))
		}
		if i < 3 {
			post(ev("usage_updated", "inputTokens", 10+i, "outputTokens", 5),
				ev("turn_completed", "turnId", id, "stopReason", "end_turn"))
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	db := openSQLite(t, path)
	turns := func(opts app.Options) (list, one string) {
		t.Helper()
		s := start(t, opts)
		defer func() {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		}()
		c := newClient(t, s)
		_, l := c.do("GET", "/sessions/a/turns", nil)
		_, o := c.do("GET", "/sessions/a/turns/t1", nil)
		return string(l), string(o)
	}
	rec := &logReadStore{Store: db}
	list, one := turns(app.Options{Store: rec})
	var got []protocol.Turn
	if err := json.Unmarshal([]byte(list), &got); err != nil {
		t.Fatalf("GET /turns: %s: %v", list, err)
	}
	if len(got) != 4 || got[2].ID != "t1" || !got[2].DigestRecorded || got[3].EndPos != nil || len(got[1].ToolCalls) != 1 || got[1].ToolCalls[0].ID != "tc1" {
		t.Fatalf("GET /turns: %s", list)
	}
	rec.mu.Lock()
	for i, sizes := range rec.pages {
		sum := 0
		for _, n := range sizes {
			sum += n
		}
		if len(sizes) > 1 && sum > server.DefaultReplayPageBytes {
			t.Errorf("log read %d held %d events of %d bytes together; want at most %d bytes or one event", i, len(sizes), sum, server.DefaultReplayPageBytes)
		}
	}
	rec.mu.Unlock()

	for _, opts := range []app.Options{
		{Store: db, ReplayPage: 1},                                 // an event a page
		{Store: db, ReplayPage: 1 << 20, ReplayPageBytes: 1 << 40}, // the whole log in one
	} {
		if l, o := turns(opts); l != list || o != one {
			t.Errorf("pages of %d events, %d bytes: GET /turns\n%s\n/turns/t1\n%s\nwant\n%s\n%s", opts.ReplayPage, opts.ReplayPageBytes, l, o, list, one)
		}
	}
}

// TestStateFoldedInPages: a process that must rebuild a session's state
// (after a restart, or once evicted) folded the session's whole event
// log read at once, up to --max-session-bytes in memory beside the state
// it built. It reads the log a page at a time now, and the state it
// builds takes the next event as the old one would have.
func TestStateFoldedInPages(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rein.db")
	s := start(t, app.Options{DBPath: path})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", `{}`)
	text := strings.Repeat("x", 250<<10)
	evs := []any{ev("turn_started", "turnId", "t1", "source", "user", "promptId", "p1"), ev("user_message", "text", "go", "turnId", "t1")}
	for range 12 {
		evs = append(evs, ev("text_delta", "delta", text))
	}
	for i, e := range evs {
		e.(map[string]any)["agentSeq"] = i + 1
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", unescaped(t, []any{e}))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	rec := &logReadStore{Store: openSQLite(t, path)}
	s = start(t, app.Options{Store: rec})
	c = newClient(t, s)
	// The new process has no state for a: this post folds its log. The
	// repeated agentSeq is a duplicate only if the fold saw the log whole.
	end := ev("turn_completed", "turnId", "t1", "stopReason", "end_turn")
	end["agentSeq"] = len(evs)
	var got struct{ Accepted, Duplicates int }
	c.must(http.StatusAccepted, &got, "POST", "/sessions/a/events", unescaped(t, []any{end}))
	if got.Duplicates != 1 {
		t.Fatalf("agentSeq %d again: %+v; want a duplicate", len(evs), got)
	}
	end["agentSeq"] = len(evs) + 1
	c.must(http.StatusAccepted, &got, "POST", "/sessions/a/events", unescaped(t, []any{end}))
	if got.Accepted != 1 {
		t.Fatalf("turn_completed: %+v; want it accepted", got)
	}
	var turns []protocol.Turn
	c.must(http.StatusOK, &turns, "GET", "/sessions/a/turns", nil)
	if len(turns) != 1 || turns[0].EndPos == nil {
		t.Fatalf("turns %+v; want t1 ended", turns)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i, sizes := range rec.pages {
		sum := 0
		for _, n := range sizes {
			sum += n
		}
		if len(sizes) > 1 && sum > 1<<20 {
			t.Errorf("log read %d held %d events of %d bytes together; want at most %d bytes or one event", i, len(sizes), sum, 1<<20)
		}
	}
}

// pausedPageStore holds the next read of a later page of GET /artifacts
// (ArtifactsBySeq after a seq) once armed, until open is closed: the
// test changes the session between two pages.
type pausedPageStore struct {
	*sqlite.Store
	armed   atomic.Bool
	entered chan struct{}
	open    chan struct{}
}

func (p *pausedPageStore) ArtifactsBySeq(ctx context.Context, id string, after int64, limit, maxBytes int) ([]store.Artifact, bool, error) {
	if after > 0 && p.armed.CompareAndSwap(true, false) {
		close(p.entered)
		<-p.open
	}
	return p.Store.ArtifactsBySeq(ctx, id, after, limit, maxBytes)
}

// TestArtifactListNotOfTwoSessions: GET /sessions/:id/artifacts reads
// the whole list a page at a time, each page its own read. A session
// deleted and created again under its id between two pages must not give
// one list that starts with the deleted session's artifacts and ends with
// the new one's, which looks complete and is neither session: the
// response is cut (a broken body the client reads as a failure), as for
// a read that fails.
func TestArtifactListNotOfTwoSessions(t *testing.T) {
	t.Parallel()
	p := &pausedPageStore{Store: openSQLite(t, filepath.Join(t.TempDir(), "rein.db")), entered: make(chan struct{}), open: make(chan struct{})}
	s := start(t, app.Options{Store: p, ReplayPage: 2})
	c := newClient(t, s)
	post := func(prefix string) {
		t.Helper()
		c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
		var evs []any
		for i := range 3 {
			evs = append(evs, ev("text_delta", "id", fmt.Sprintf("m%d", i), "delta", fmt.Sprintf("%s %d", prefix, i)))
		}
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", evs)
	}
	post("old")
	p.armed.Store(true)
	type answer struct {
		status int
		body   []byte
		err    error
	}
	answers := make(chan answer, 1)
	go func() {
		resp, err := http.Get(s.URL() + "/sessions/a/artifacts")
		if err != nil {
			answers <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		answers <- answer{resp.StatusCode, b, err}
	}()
	select {
	case <-p.entered:
	case <-time.After(streamDeadline):
		close(p.open)
		t.Fatal("the list never read a second page")
	}
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil)
	post("new")
	close(p.open)
	var a answer
	select {
	case a = <-answers:
	case <-time.After(streamDeadline):
		t.Fatal("GET /artifacts never answered")
	}
	if a.err != nil {
		return // cut: the client knows it has no list
	}
	// Or whole, of one session: Go's transport sends a GET again by
	// itself when its connection closed before any answer came.
	var list []protocol.Artifact
	if err := json.Unmarshal(a.body, &list); err != nil {
		t.Fatalf("status %d, body %s: %v", a.status, a.body, err)
	}
	var texts []string
	for _, x := range list {
		texts = append(texts, x.String("text"))
	}
	old, fresh := 0, 0
	for _, s := range texts {
		if strings.HasPrefix(s, "old") {
			old++
		} else {
			fresh++
		}
	}
	if old > 0 && fresh > 0 {
		t.Fatalf("GET /artifacts answered %d with %q: the deleted session's artifacts and then the new one's, as one complete list", a.status, texts)
	}
}
