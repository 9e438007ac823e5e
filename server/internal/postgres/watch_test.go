package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/pgtest"
	"github.com/rein-ai/rein/server/store"
)

// Two replicas on one database: each hears of the other's commits, with
// the sessions they changed, never of its own; after connecting it is
// told that anything may have changed (nil) first. LoadSession reads the
// row, its instances and its token as the other replica wrote them.
func TestWatchAnnouncesOtherReplicasCommits(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu    sync.Mutex
		calls [][]string
		cond  = sync.NewCond(&mu)
	)
	done := make(chan error, 1)
	go func() {
		done <- b.Watch(ctx, func(ids []string) {
			mu.Lock()
			calls = append(calls, ids)
			cond.Broadcast()
			mu.Unlock()
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v after its context ended; want nil", err)
		}
	}()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.AfterFunc(20*time.Second, func() { mu.Lock(); cond.Broadcast(); mu.Unlock() })
		defer deadline.Stop()
		start := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for !ok() {
			if time.Since(start) > 20*time.Second {
				t.Fatalf("%s: calls %v", what, calls)
			}
			cond.Wait()
		}
	}
	waitFor("the first call says everything may have changed", func() bool { return len(calls) > 0 })
	if calls[0] != nil {
		t.Fatalf("first call %v; want nil", calls[0])
	}
	// b's own commit is not announced to b; a's are, with their ids.
	rec := protocol.Session{ID: "own", Status: protocol.StatusBootstrapping, CreatedAt: 1}
	if err := b.Commit(ctx, []store.Op{store.CreateSession{Session: rec}}); err != nil {
		t.Fatal(err)
	}
	var ops []store.Op
	for i := range 3 {
		id := fmt.Sprintf("s%d", i)
		ops = append(ops, store.CreateSession{Session: protocol.Session{ID: id, Status: protocol.StatusBootstrapping, CreatedAt: 1}},
			store.SetSandboxToken{SessionID: id, Hash: [32]byte{byte(i), 7}, At: 1},
			store.AddInstance{SessionID: id, Instance: "i1", At: 1})
	}
	if err := a.Commit(ctx, ops); err != nil {
		t.Fatal(err)
	}
	waitFor("a's commit announced", func() bool { return len(calls) > 1 })
	mu.Lock()
	got := slices.Concat(calls[1:]...)
	mu.Unlock()
	slices.Sort(got)
	if want := []string{"s0", "s1", "s2"}; !slices.Equal(got, want) {
		t.Errorf("announced %v; want %v (and never b's own session)", got, want)
	}
	r, h, err := b.LoadSession(ctx, "s1")
	if err != nil || r.ID != "s1" || h == nil || h[0] != 1 || !slices.Equal(r.Instances, []string{"i1"}) {
		t.Errorf("LoadSession(s1) = %+v, %v, %v", r, h, err)
	}
	if _, _, err := b.LoadSession(ctx, "nope"); protocol.CodeOf(err) != protocol.CodeNotFound {
		t.Errorf("LoadSession(nope): %v; want not found", err)
	}
	// Many sessions in one commit are split over several notifications,
	// each within NOTIFY's limit, and all arrive.
	ops = nil
	for i := range 600 {
		ops = append(ops, store.CreateSession{Session: protocol.Session{ID: fmt.Sprintf("many-%03d-%s", i, "xxxxxxxxxxxxxxxxxxxx"), Status: protocol.StatusBootstrapping, CreatedAt: 1}})
	}
	mu.Lock()
	calls = calls[:0]
	mu.Unlock()
	if err := a.Commit(ctx, ops); err != nil {
		t.Fatal(err)
	}
	waitFor("600 sessions announced", func() bool { return len(slices.Concat(calls...)) >= 600 })
	if len(calls) < 2 {
		t.Errorf("600 long ids came in %d notification(s); want them split", len(calls))
	}
}

// A NOTIFY that fails is sent again once the database answers: the
// other replicas' session and approval streams, which no poll covers,
// hear of the commit. The database refuses new connections and a's
// pooled ones are cut (b's LISTEN connection stays), so a's NOTIFY
// fails; then it lets them in again.
func TestFailedAnnouncementIsSentAgain(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := strings.TrimPrefix(u.Path, "/")
	admin, err := pgx.Connect(context.Background(), pgtest.Shared(t).DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	allow := func(on bool) {
		t.Helper()
		if _, err := admin.Exec(context.Background(), fmt.Sprintf("ALTER DATABASE %s ALLOW_CONNECTIONS %t", pgx.Identifier{db}.Sanitize(), on)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { allow(true) })

	failed := make(chan struct{}, 1)
	a, err := Open(context.Background(), dsn, slog.New(slogHandler{t: t, on: "announce commits", seen: failed}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	b := open(t, dsn)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan []string, 16)
	done := make(chan error, 1)
	go func() { done <- b.Watch(ctx, func(ids []string) { got <- ids }) }()
	defer func() {
		cancel()
		<-done
	}()
	if ids := <-got; ids != nil {
		t.Fatalf("first call %v; want nil", ids)
	}

	allow(false)
	var cut int
	if err := admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND query NOT ILIKE 'listen%'`, db).Scan(&cut); err != nil {
		t.Fatal(err)
	}
	if cut == 0 {
		t.Fatal("no pooled connection to cut")
	}
	a.announce([]string{"s1"})
	// The NOTIFY fails (a's pool cannot connect) before the database
	// lets it in again.
	select {
	case <-failed:
	case <-time.After(15 * time.Second):
		t.Fatal("a's NOTIFY did not fail")
	}
	allow(true)
	select {
	case ids := <-got:
		if !slices.Equal(ids, []string{"s1"}) {
			t.Errorf("b heard %v; want [s1]", ids)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("b never heard of the commit whose NOTIFY failed")
	}
}

// slogHandler logs to t and signals seen when a record's message starts
// with on.
type slogHandler struct {
	t    *testing.T
	on   string
	seen chan struct{}
}

func (h slogHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h slogHandler) Handle(_ context.Context, r slog.Record) error {
	h.t.Logf("%s %s", r.Level, r.Message)
	if strings.HasPrefix(r.Message, h.on) {
		select {
		case h.seen <- struct{}{}:
		default:
		}
	}
	return nil
}
func (h slogHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h slogHandler) WithGroup(string) slog.Handler      { return h }

// SessionVersions pages through every session in id order, each with its
// row's version and createdAt, a page shorter than the limit being the
// last; a session deleted or updated shows so on the next read.
func TestSessionVersionsPages(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t))
	ctx := t.Context()
	var ops []store.Op
	for _, id := range []string{"c", "a", "e", "b", "d"} {
		ops = append(ops, store.CreateSession{Session: protocol.Session{ID: id, Status: protocol.StatusBootstrapping, CreatedAt: int64(id[0])}})
	}
	if err := s.Commit(ctx, ops); err != nil {
		t.Fatal(err)
	}
	rec, _, err := s.LoadSession(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	rec.Version++
	if err := s.Commit(ctx, []store.Op{store.DeleteSession{ID: "b"}, store.UpdateSession{Session: rec}}); err != nil {
		t.Fatal(err)
	}
	var got []store.SessionVersion
	after, pages := "", 0
	for {
		page, err := s.SessionVersions(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		got, pages = append(got, page...), pages+1
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].ID
	}
	var want []store.SessionVersion
	for _, id := range []string{"a", "c", "d", "e"} {
		want = append(want, store.SessionVersion{ID: id, CreatedAt: int64(id[0])})
	}
	want[2].Version = 1 // d's update
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("in %d pages: %v; want %v in 3", pages, got, want)
	}
}
