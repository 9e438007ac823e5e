package server_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/internal/disktest"
	"github.com/rein-ai/rein/server/internal/sqlite"
	"github.com/rein-ai/rein/server/store"
)

// A second server on the same database file refuses to start, naming the
// file and the process holding it; once the first stops, it starts.
func TestOneServerPerDatabaseFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rein.db")
	s1, err := app.New(app.Options{DBPath: path})
	if err != nil {
		t.Fatal(err)
	}
	_, err = app.New(app.Options{DBPath: path})
	if err == nil {
		t.Fatal("a second server opened the same database file")
	}
	for _, want := range []string{path, fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	start(t, app.Options{DBPath: path})
}

// fullStore is the SQLite store with its disk made full on demand: writes
// fail as SQLite's do (SQLITE_FULL) while reads work. The SQLite store's
// own behaviour when full is tested with a real page limit in
// internal/sqlite (TestFullDatabase).
type fullStore struct {
	*sqlite.Store
	full atomic.Bool
}

var errDiskFull = errors.New("database or disk is full (13)")

func (f *fullStore) Commit(ctx context.Context, ops []store.Op) error {
	if f.full.Load() {
		return fmt.Errorf("commit %d ops: %w", len(ops), errDiskFull)
	}
	return f.Store.Commit(ctx, ops)
}

func (f *fullStore) CheckWrite(ctx context.Context) error {
	if f.full.Load() {
		return fmt.Errorf("check write: %w", errDiskFull)
	}
	return f.Store.CheckWrite(ctx)
}

// eventually polls cond until it holds; the bound only keeps a broken
// test from hanging.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(streamDeadline); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("never happened: %s", what)
}

// A server whose disk is full starts (its restart bookkeeping cannot be
// written), serves reads, answers writes and /healthz with 503 saying why,
// and recovers by itself when space returns: health, the pending
// bookkeeping and new writes.
func TestFullDiskAtStart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rein.db")
	db := openSQLite(t, path)
	// A session that was live when the previous server died.
	live := protocol.Session{ID: "a", Status: protocol.StatusLive, CreatedAt: time.Now().UnixMilli()}
	if err := db.Commit(t.Context(), []store.Op{store.CreateSession{Session: live}}); err != nil {
		t.Fatal(err)
	}
	fs := &fullStore{Store: db}
	fs.full.Store(true)
	// The refused post to a below shows its sandbox alive (stored or
	// not: writer.fail), so the restart rule waits a heartbeat timeout
	// from it: a short one keeps the test from waiting 45 s.
	s := start(t, app.Options{Store: fs, HeartbeatTimeout: 2 * time.Second})
	c := newClient(t, s)

	var rec protocol.Session
	c.must(http.StatusOK, &rec, "GET", "/sessions/a", nil)
	var list []protocol.Session
	c.must(http.StatusOK, &list, "GET", "/sessions", nil)
	body := c.wantError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "GET", "/healthz", nil)
	if !strings.Contains(body.Message, "full") {
		t.Errorf("healthz says %q; want the reason (full)", body.Message)
	}
	c.wantError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "POST", "/sessions/b", nil)
	c.wantError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "POST", "/sessions/a/events", []any{ev("notice", "level", "info", "message", "m")})

	fs.full.Store(false)
	eventually(t, "healthz answers 200 after space returned", func() bool {
		code, _ := c.do("GET", "/healthz", nil)
		return code == http.StatusOK
	})
	eventually(t, "the restart rule is stored", func() bool {
		got, err := db.Session(t.Context(), "a")
		return err == nil && got.Status == protocol.StatusDisconnected
	})
	c.must(http.StatusCreated, nil, "POST", "/sessions/b", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/b/events", []any{ev("notice", "level", "info", "message", "m")})
}

// Writes failing while the server runs turn /healthz to 503 until the
// writer's probe finds room again, without any client retrying.
func TestFullDiskWhileRunning(t *testing.T) {
	t.Parallel()
	s, fs := startFull(t)
	c := newClient(t, s)
	c.must(http.StatusOK, nil, "GET", "/healthz", nil)
	fs.full.Store(true)
	c.wantError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "POST", "/sessions/a", nil)
	c.wantError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "GET", "/healthz", nil)
	fs.full.Store(false)
	eventually(t, "healthz answers 200 after space returned", func() bool {
		code, _ := c.do("GET", "/healthz", nil)
		return code == http.StatusOK
	})
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
}

// startFull starts a server on a SQLite store whose disk can be made full
// (fullStore), in a file of the test's.
func startFull(t *testing.T) (*app.App, *fullStore) {
	t.Helper()
	return startFullOpts(t, app.Options{})
}

// startFullOpts is startFull with options (their Store is the fullStore).
func startFullOpts(t *testing.T, opts app.Options) (*app.App, *fullStore) {
	t.Helper()
	db := openSQLite(t, filepath.Join(t.TempDir(), "rein.db"))
	fs := &fullStore{Store: db}
	opts.Store = fs
	return start(t, opts), fs
}

// A client resuming with a Last-Event-ID above the session's revision (the
// database was restored from an older backup) gets every artifact again,
// not nothing.
func TestResumeAfterRestoreFromBackup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "rein.db")
	backup := filepath.Join(dir, "backup")
	files := []string{"", "-wal", "-shm"}

	s1, err := app.New(app.Options{DBPath: path})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s1)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("turn_started", "turnId", "t1", "source", "user"),
		ev("user_message", "text", "before the backup"),
	})
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		disktest.CopyFile(t, path+f, backup+f)
	}

	s2, err := app.New(app.Options{DBPath: path})
	if err != nil {
		t.Fatal(err)
	}
	c = newClient(t, s2)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("text_delta", "delta", "after the backup"),
		ev("notice", "level", "info", "message", "lost in the restore"),
	})
	m := newModel(t)
	st := c.stream("/sessions/a/stream")
	m.readSnapshot(st)
	st.close()
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}

	for _, f := range files {
		disktest.CopyFile(t, backup+f, path+f)
	}
	s3 := start(t, app.Options{DBPath: path})
	c = newClient(t, s3)
	head := storedRev(t, s3, "a")
	if atoi(t, m.lastID) <= head {
		t.Fatalf("test setup: the client's Last-Event-ID %s is not above the restored head %d", m.lastID, head)
	}
	resumed := newModel(t)
	st = c.stream("/sessions/a/stream", "Last-Event-ID", m.lastID)
	resumed.readSnapshot(st)
	resumed.equal(c, "a")
	if len(resumed.arts) != 2 {
		t.Fatalf("resume above the head replayed %d artifacts; want the 2 the restored database has", len(resumed.arts))
	}
}

// gatedStore is the SQLite store whose commits wait while the gate is
// closed, saying so on entered: a commit that takes as long as a test
// needs.
type gatedStore struct {
	*sqlite.Store
	closed  atomic.Bool
	entered chan struct{}
	open    chan struct{}
}

// newGatedStore opens a SQLite file in a temporary dir, its gate open.
func newGatedStore(t *testing.T) *gatedStore {
	t.Helper()
	db := openSQLite(t, filepath.Join(t.TempDir(), "rein.db"))
	return &gatedStore{Store: db, entered: make(chan struct{}, 1), open: make(chan struct{})}
}

func (g *gatedStore) Commit(ctx context.Context, ops []store.Op) error {
	if g.closed.Load() {
		select {
		case g.entered <- struct{}{}:
		default:
		}
		<-g.open
	}
	return g.Store.Commit(ctx, ops)
}

// A client that leaves while its request waits for room in the writer's
// queue (an overloaded server) is counted as 499, client closed request,
// not as a failure of the server: no 5xx in the metrics, nothing in the
// error log. Its events were never queued, so its retry stores them; the
// requests before it are committed and answered.
func TestClientGoneWhileQueued(t *testing.T) {
	g := newGatedStore(t)
	server.ShortQueue(t, 1)
	var logs lockedBuffer
	s := start(t, app.Options{Store: g, MetricsAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	post := func(seq int) string {
		return fmt.Sprintf(`[{"type":"text_delta","id":"m1","delta":"d%d ","agentSeq":%d}]`, seq, seq)
	}

	// 1 is in a commit that waits; 2 fills the queue.
	g.closed.Store(true)
	answered := make(chan int, 2)
	for seq := range 2 {
		go func() {
			resp, err := http.Post(c.base+"/sessions/a/events", "application/json", strings.NewReader(post(seq+1)))
			if err != nil {
				answered <- 0
				return
			}
			resp.Body.Close()
			answered <- resp.StatusCode
		}()
		if seq == 0 {
			select {
			case <-g.entered:
			case <-time.After(streamDeadline):
				t.Fatal("the first POST never reached a commit")
			}
		}
	}
	eventually(t, "the second POST queued", func() bool { return server.Queued(s.Server) == 1 })
	released := false
	defer func() {
		if !released {
			close(g.open) // a failed test must not leave the writer stuck
		}
	}()

	// 3 is sent whole, then its client leaves: its handler waits for room
	// in the queue until the server sees the connection closed.
	conn, err := net.Dial("tcp", strings.TrimPrefix(c.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	body := post(3)
	fmt.Fprintf(conn, "POST /sessions/a/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	conn.Close()
	metrics := "http://" + s.MetricsAddr() + "/metrics"
	series := func(code int) string {
		return fmt.Sprintf(`rein_http_requests_total{code="%d",route="POST /sessions/{id}/events"}`, code)
	}
	eventually(t, "the abandoned POST counted", func() bool {
		m := scrape(t, metrics)
		return m[series(499)]+m[series(500)]+m[series(503)] > 0
	})
	if m := scrape(t, metrics); m[series(499)] != 1 {
		t.Errorf("the abandoned POST is counted as 499 %v times, 500 %v, 503 %v; want 499 once", m[series(499)], m[series(500)], m[series(503)])
	}

	g.closed.Store(false)
	close(g.open)
	released = true
	for range 2 {
		if code := <-answered; code != http.StatusAccepted {
			t.Errorf("a POST before the abandoned one: %d; want 202", code)
		}
	}
	var res protocol.EventsAccepted
	c.must(http.StatusAccepted, &res, "POST", "/sessions/a/events", post(3))
	if res.Accepted != 1 || res.Duplicates != 0 {
		t.Errorf("the abandoned POST's retry: %+v; want its event stored now, not a duplicate (it was never queued)", res)
	}
	for k, v := range scrape(t, metrics) {
		if strings.HasPrefix(k, `rein_http_requests_total{code="5`) {
			t.Errorf("%s = %v; want no 5xx for a client that left", k, v)
		}
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("the error log has a line for the client that left:\n%s", logs.String())
	}
}

// oneGroup runs the requests in one group commit behind a commit that
// waits (hold), in the order given, and returns their statuses.
func oneGroup(t *testing.T, s *app.App, g *gatedStore, hold func() int, reqs ...func() int) []int {
	t.Helper()
	g.open = make(chan struct{}) // before closed is set: Commit reads it after
	g.closed.Store(true)
	released := false
	defer func() {
		if !released {
			close(g.open) // a failed test must not leave the writer stuck
		}
	}()
	type answer struct{ i, status int }
	answers := make(chan answer, len(reqs)+1)
	go func() { answers <- answer{-1, hold()} }()
	select {
	case <-g.entered:
	case <-time.After(streamDeadline):
		t.Fatal("the holding request never reached a commit")
	}
	for i, f := range reqs {
		n := server.Queued(s.Server)
		go func() { answers <- answer{i, f()} }()
		eventually(t, "request queued", func() bool { return server.Queued(s.Server) == n+1 })
	}
	g.closed.Store(false)
	close(g.open)
	released = true
	got := make([]int, len(reqs))
	for range len(reqs) + 1 {
		select {
		case a := <-answers:
			if a.i >= 0 {
				got[a.i] = a.status
			}
		case <-time.After(streamDeadline):
			t.Fatal("an answer never came")
		}
	}
	return got
}

// readFailStore is the SQLite store whose reads fail on demand, as a
// database that lost its disk or its connection does, while the server's
// writer (which reads through the same store) is left alone by the test.
type readFailStore struct {
	*sqlite.Store
	fail atomic.Bool
}

var errReadFailed = errors.New("disk I/O error (10)")

func (f *readFailStore) err(op string) error {
	if f.fail.Load() {
		return fmt.Errorf("%s: %w", op, errReadFailed)
	}
	return nil
}

func (f *readFailStore) Session(ctx context.Context, id string) (protocol.Session, error) {
	if err := f.err("get session"); err != nil {
		return protocol.Session{}, err
	}
	return f.Store.Session(ctx, id)
}

func (f *readFailStore) Sessions(ctx context.Context, project string) ([]protocol.Session, error) {
	if err := f.err("list sessions"); err != nil {
		return nil, err
	}
	return f.Store.Sessions(ctx, project)
}

func (f *readFailStore) Artifacts(ctx context.Context, id string) ([]store.Artifact, error) {
	if err := f.err("artifacts"); err != nil {
		return nil, err
	}
	return f.Store.Artifacts(ctx, id)
}

func (f *readFailStore) ArtifactsPage(ctx context.Context, id string, after int64, limit, maxBytes int) (store.Snapshot, error) {
	if err := f.err("artifacts page"); err != nil {
		return store.Snapshot{}, err
	}
	return f.Store.ArtifactsPage(ctx, id, after, limit, maxBytes)
}

func (f *readFailStore) ArtifactsBySeq(ctx context.Context, id string, after int64, limit, maxBytes int) ([]store.Artifact, bool, error) {
	if err := f.err("artifacts by seq"); err != nil {
		return nil, false, err
	}
	return f.Store.ArtifactsBySeq(ctx, id, after, limit, maxBytes)
}

func (f *readFailStore) Events(ctx context.Context, id string) ([]store.Event, error) {
	if err := f.err("events"); err != nil {
		return nil, err
	}
	return f.Store.Events(ctx, id)
}

func (f *readFailStore) EventsAfter(ctx context.Context, id string, after int64, limit, maxBytes int) ([]store.Event, bool, error) {
	if err := f.err("events after"); err != nil {
		return nil, false, err
	}
	return f.Store.EventsAfter(ctx, id, after, limit, maxBytes)
}

func (f *readFailStore) Commands(ctx context.Context, id string, after, upTo int64) ([]store.Command, error) {
	if err := f.err("commands"); err != nil {
		return nil, err
	}
	return f.Store.Commands(ctx, id, after, upTo)
}

// A read the database fails is 503 unavailable (retry), as a failed write
// is, not 500 internal: that is for bugs, and clients retry only the
// first. A session that does not exist is still 404.
func TestFailedReadsAreUnavailable(t *testing.T) {
	t.Parallel()
	db := openSQLite(t, filepath.Join(t.TempDir(), "rein.db"))
	fs := &readFailStore{Store: db}
	s := start(t, app.Options{Store: fs})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", map[string]string{"prompt": "hi"})
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permissionEvents("t1", "tc1", "r1", 1))

	fs.fail.Store(true)
	for _, path := range []string{
		"/sessions", "/sessions/a", "/sessions/a/artifacts", "/sessions/a/artifacts?limit=5",
		"/sessions/a/turns", "/sessions/a/turns/t1", "/sessions/a/events",
		"/sessions/a/stream", "/sessions/a/commands",
	} {
		e := c.wantError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "GET", path, nil)
		if strings.Contains(e.Message, "I/O") {
			t.Errorf("GET %s: message %q carries the store's error", path, e.Message)
		}
	}
	fs.fail.Store(false)
	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", "/sessions/nope", nil)
	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", "/sessions/nope/turns", nil)
	c.must(http.StatusOK, nil, "GET", "/sessions/a/turns", nil)
}
