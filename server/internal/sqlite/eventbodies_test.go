package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rein-ai/rein/server/store"
)

// kbEvent is a body of n bytes, as a tool's output line makes.
func kbEvent(pos int64, n int) store.Event {
	b := fmt.Appendf(nil, `{"type":"tool_output_delta","id":"t1","delta":"%d:`, pos)
	b = append(b, strings.Repeat("x", n-len(b)-2)...)
	return store.Event{Pos: pos, Instance: "i1", AgentSeq: pos, Body: append(b, `"}`...)}
}

// count returns the rows of table matching where.
func count(t *testing.T, s *Store, table, where string) int {
	t.Helper()
	var n int
	if err := s.r.Get(&n, "SELECT COUNT(*) FROM "+table+" WHERE "+where); err != nil {
		t.Fatal(err)
	}
	return n
}

// A body too big for a leaf of events goes into event_bodies, once,
// whether it is staged or not, and the row keeps none of it; a body that
// fits stays in its row. Deleting the session deletes its bodies, staged
// and not, and no other session's; a commit that fails leaves none.
func TestEventBodiesKeptApart(t *testing.T) {
	ctx := context.Background()
	s := openFile(t, filepath.Join(t.TempDir(), "rein.db"))
	commit(t, s, store.CreateSession{Session: newSession("a")}, store.CreateSession{Session: newSession("b")})
	fits := leafRow - len("a") - len("i1")
	sizes := []int{100, fits, fits + 1, 1134, 5000}
	var evs []store.Event
	for i, n := range sizes {
		evs = append(evs, kbEvent(int64(i+1), n))
	}
	commit(t, s, store.AppendEvents{SessionID: "a", Events: evs[:3]}, store.AppendEvents{SessionID: "b", Events: evs})
	commit(t, s, store.AppendEvents{SessionID: "a", Events: evs[3:], Stage: true})
	if n := count(t, s, "event_bodies", "1"); n != 6 {
		t.Fatalf("event_bodies holds %d rows; want 6 (3 of a, 3 of b)", n)
	}
	for _, table := range []string{"events", "staged_events"} {
		if n := count(t, s, table, "body_id IS NOT NULL AND body != ''"); n != 0 {
			t.Fatalf("%s: %d rows hold a body kept apart too", table, n)
		}
		if n := count(t, s, table, "body_id IS NULL AND octet_length(body) > "+fmt.Sprint(fits)); n != 0 {
			t.Fatalf("%s: %d rows hold a body too big for a leaf", table, n)
		}
	}
	if n := count(t, s, "staged_events", "body_id IS NOT NULL"); n != 2 {
		t.Fatalf("%d staged rows name a body; want 2", n)
	}
	// A failed commit (a position a already holds) takes its body with it.
	if err := s.Commit(ctx, []store.Op{store.AppendEvents{SessionID: "b", Events: []store.Event{kbEvent(6, 3000)}}, store.AppendEvents{SessionID: "a", Events: []store.Event{kbEvent(2, 3000)}}}); err == nil {
		t.Fatal("a position stored twice was accepted")
	}
	if n := count(t, s, "event_bodies", "1"); n != 6 {
		t.Fatalf("event_bodies holds %d rows after a failed commit; want 6", n)
	}
	commit(t, s, store.DeleteSession{ID: "a"})
	if n := count(t, s, "event_bodies", "1"); n != 3 {
		t.Fatalf("event_bodies holds %d rows after a's delete; want b's 3", n)
	}
	commit(t, s, store.Unstage{})
	got, err := s.Events(ctx, "b")
	if err != nil || len(got) != len(evs) {
		t.Fatalf("Events(b) = %d, %v", len(got), err)
	}
	for i := range evs {
		if string(got[i].Body) != string(evs[i].Body) {
			t.Fatalf("Events(b)[%d] is %d bytes; want %d", i, len(got[i].Body), len(evs[i].Body))
		}
	}
	commit(t, s, store.DeleteSession{ID: "b"})
	if n := count(t, s, "event_bodies", "1"); n != 0 {
		t.Fatalf("event_bodies holds %d rows once every session is deleted", n)
	}
}

// The log of a tool's output in lines of about a kilobyte takes about
// its size on disk, not a page an event: 2,000 events of 1,134 bytes
// (2.3 MB) took 9.4 MB of pages in a log whose rows kept their bodies (an
// overflow page each), 2.8 MB with the bodies apart.
func TestKilobyteEventsTakeTheirSize(t *testing.T) {
	s := openFile(t, filepath.Join(t.TempDir(), "rein.db"))
	commit(t, s, store.CreateSession{Session: newSession("a")})
	pages := func() int64 {
		t.Helper()
		var n, free, size int64
		if err := s.w.Get(&n, `PRAGMA page_count`); err != nil {
			t.Fatal(err)
		}
		if err := s.w.Get(&free, `PRAGMA freelist_count`); err != nil {
			t.Fatal(err)
		}
		if err := s.w.Get(&size, `PRAGMA page_size`); err != nil {
			t.Fatal(err)
		}
		return (n - free) * size
	}
	before := pages()
	const n, size = 2000, 1134
	for pos := int64(1); pos <= n; pos += 20 {
		var evs []store.Event
		for p := pos; p < pos+20; p++ {
			evs = append(evs, kbEvent(p, size))
		}
		// Half straight into the log, half staged and moved in.
		commit(t, s, store.AppendEvents{SessionID: "a", Events: evs, Stage: pos > n/2})
	}
	commit(t, s, store.Unstage{})
	grew := pages() - before
	if limit := int64(n * size * 3 / 2); grew > limit {
		t.Fatalf("%d events of %d bytes took %d bytes of pages; want at most %d", n, size, grew, limit)
	}
	t.Logf("%d events of %d bytes (%d bytes) took %d bytes of pages", n, size, n*size, grew)
}

// Events a build before migration 0012 stored, their bodies in their
// rows whatever their size, read back as they were, in the log and
// staged, and go with their session; events stored since keep big bodies
// apart beside them.
func TestBodiesStoredBeforeMigration12(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	old := migratedBefore(t, path, 12)
	want := []store.Event{kbEvent(1, 100), kbEvent(2, 3000), kbEvent(3, 2000), kbEvent(4, 100)}
	if _, err := old.Exec(`INSERT INTO sessions (id, status, created_at) VALUES ('a', 'live', 1)`); err != nil {
		t.Fatal(err)
	}
	for i, e := range want {
		table := "events"
		if i >= 2 {
			table = "staged_events"
		}
		if _, err := old.Exec(`INSERT INTO `+table+` (session_id, pos, instance, agent_seq, body) VALUES ('a', ?, ?, ?, ?)`, e.Pos, e.Instance, e.AgentSeq, string(e.Body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s := openFile(t, path)
	want = append(want, kbEvent(5, 3000), kbEvent(6, 100))
	commit(t, s, store.AppendEvents{SessionID: "a", Events: want[4:], Stage: true})
	check := func(when string) {
		t.Helper()
		got, err := s.Events(ctx, "a")
		if err != nil || len(got) != len(want) {
			t.Fatalf("%s: Events = %d, %v; want %d", when, len(got), err, len(want))
		}
		for i := range want {
			if got[i].Pos != want[i].Pos || string(got[i].Body) != string(want[i].Body) {
				t.Fatalf("%s: Events[%d] = pos %d, %d bytes; want pos %d, %d bytes", when, i, got[i].Pos, len(got[i].Body), want[i].Pos, len(want[i].Body))
			}
		}
		list, _, err := s.EventsAfter(ctx, "a", 1, 10, 3000)
		if err != nil || len(list) != 1 || list[0].Pos != 2 {
			t.Fatalf("%s: a page of 3000 bytes after pos 1 = %d events, %v; want pos 2 alone", when, len(list), err)
		}
	}
	check("after the migration")
	if n := count(t, s, "event_bodies", "1"); n != 1 {
		t.Fatalf("event_bodies holds %d rows; want the one stored since", n)
	}
	commit(t, s, store.Unstage{})
	check("after Unstage")
	commit(t, s, store.DeleteSession{ID: "a"})
	for _, table := range []string{"events", "staged_events", "event_bodies"} {
		if n := count(t, s, table, "1"); n != 0 {
			t.Errorf("%s holds %d rows after the delete", table, n)
		}
	}
}
