package storetest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/store"
)

// The optional interfaces (store/turns.go): a store that implements one is
// held to it here, so a backend cannot claim one and answer differently
// from the others. A store without it skips, saying so.

func testTurnDigests(t *testing.T, s store.Store) {
	ds, ok := s.(store.TurnDigestStore)
	if !ok {
		t.Skipf("%T does not record turn digests", s)
	}
	ctx := context.Background()
	d := func(turn string, end int64, b byte) store.TurnDigest {
		return store.TurnDigest{TurnID: turn, EndPos: end, Digest: [32]byte{b, 1, 2}, At: 1000 + end}
	}
	commit(t, s, store.CreateSession{Session: session("a", 1, "")}, store.CreateSession{Session: session("b", 1, "")})
	// Recorded out of order and one position written twice (a retried
	// commit): read back by end position, the last write winning.
	commit(t, s,
		store.PutTurnDigest{SessionID: "a", Digest: d("t2", 20, 2)},
		store.PutTurnDigest{SessionID: "a", Digest: d("t1", 10, 1)},
		store.PutTurnDigest{SessionID: "b", Digest: d("t1", 5, 9)},
	)
	commit(t, s, store.PutTurnDigest{SessionID: "a", Digest: d("t2", 20, 3)})
	got, err := ds.TurnDigests(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.TurnDigest{d("t1", 10, 1), d("t2", 20, 3)}
	if !slices.Equal(got, want) {
		t.Errorf("TurnDigests(a) = %+v; want %+v", got, want)
	}
	// Atomic with the rest of its commit.
	commitFails(t, s, store.PutTurnDigest{SessionID: "a", Digest: d("t3", 30, 4)}, store.UpdateSession{Session: store.Session{Session: session("missing", 1, "")}})
	if got, _ := ds.TurnDigests(ctx, "a"); len(got) != 2 {
		t.Errorf("a failed commit left a digest: %+v", got)
	}
	commit(t, s, store.DeleteSession{ID: "a"})
	if got, err := ds.TurnDigests(ctx, "a"); err != nil || len(got) != 0 {
		t.Errorf("TurnDigests after delete = %+v, %v; want none", got, err)
	}
	if got, _ := ds.TurnDigests(ctx, "b"); len(got) != 1 {
		t.Errorf("another session's digests were deleted: %+v", got)
	}
}

// A store that says its appends may hold NUL reads them back merged as
// store.MergeAppends does, "\u0000" and all, over a commit of its own.
func testAppendsHoldingNUL(t *testing.T, s store.Store) {
	if n, ok := s.(store.NULAppender); !ok || !n.AppendsNUL() {
		t.Skipf("%T does not append text holding NUL", s)
	}
	commit(t, s, store.CreateSession{Session: session("a", 1, "")})
	base := artifact(t, 1, 1, "\x00ELF")
	commit(t, s, store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{base}})
	appends := []store.FieldAppend{{Field: "output", Text: "\x7fELF\x02\x00\x00"}, {Field: "output", Text: "\x00"}, {Field: "inputText", Text: "a\x00b"}}
	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 2, Fields: appends[:1]}}})
	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 3, Fields: appends[1:]}}})
	setRev(t, s, "a", 3)
	want, err := store.MergeAppends(base.Body, 3, appends)
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.Artifacts(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || string(all[0].Body) != string(want) {
		t.Fatalf("Artifacts(a) = %s\nwant %s", all[0].Body, want)
	}
}

func testEventPages(t *testing.T, s store.Store) {
	pg, ok := s.(store.EventPager)
	if !ok {
		t.Skipf("%T does not page events", s)
	}
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "")}, store.CreateSession{Session: session("b", 1, "")})
	var all []store.Event
	for pos := int64(1); pos <= 25; pos++ {
		all = append(all, store.Event{Pos: pos, Instance: "i", AgentSeq: pos, Body: fmt.Appendf(nil, `{"n":%d}`, pos)})
	}
	commit(t, s, store.AppendEvents{SessionID: "a", Events: all}, store.AppendEvents{SessionID: "b", Events: all[:3]})
	// Pages of 10 (the last 5, without more), and of 5 (the last full,
	// without more either: more is what was left, not a full page).
	for _, limit := range []int{10, 5} {
		got := pageEvents(t, pg, "a", limit, 0)
		if len(got) != len(all) {
			t.Fatalf("limit %d: paged %d events; want %d", limit, len(got), len(all))
		}
		for i := range all {
			if got[i].Pos != all[i].Pos || string(got[i].Body) != string(all[i].Body) || got[i].AgentSeq != all[i].AgentSeq {
				t.Fatalf("limit %d: page entry %d = %+v; want %+v", limit, i, got[i], all[i])
			}
		}
	}
	if page, more, err := pg.EventsAfter(ctx, "a", 20, 5, 0); err != nil || len(page) != 5 || more {
		t.Errorf("EventsAfter(a, 20, 5) = %d events, more %v, %v; want the last 5 without more", len(page), more, err)
	}
	if page, more, err := pg.EventsAfter(ctx, "missing", 0, 10, 0); err != nil || len(page) != 0 || more {
		t.Errorf("EventsAfter(missing) = %d events, more %v, %v; want none", len(page), more, err)
	}
}

// testEventPagesByBytes: a page of the log stops before the event that
// would take its bodies past maxBytes, holds one at least however large,
// says whether events were left, and the pages together are the log.
func testEventPagesByBytes(t *testing.T, s store.Store) {
	pg, ok := s.(store.EventPager)
	if !ok {
		t.Skipf("%T does not page events", s)
	}
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "")})
	// Bodies of 100 bytes, but pos 3 of 1000.
	body := func(pos int64, size int) []byte {
		b := fmt.Appendf(nil, `{"n":%d,"pad":"`, pos)
		b = append(b, strings.Repeat("x", size-len(b)-2)...)
		return append(b, `"}`...)
	}
	var all []store.Event
	for pos := int64(1); pos <= 6; pos++ {
		size := 100
		if pos == 3 {
			size = 1000
		}
		all = append(all, store.Event{Pos: pos, Instance: "i", AgentSeq: pos, Body: body(pos, size)})
	}
	commit(t, s, store.AppendEvents{SessionID: "a", Events: all})
	for _, tt := range []struct {
		after    int64
		maxBytes int
		want     []int64
		more     bool
	}{
		{0, 200, []int64{1, 2}, true},
		{0, 199, []int64{1}, true},
		{0, 1, []int64{1}, true}, // one at least
		{2, 1, []int64{3}, true}, // however large
		{2, 1000, []int64{3}, true},
		{2, 1100, []int64{3, 4}, true},
		{0, 1 << 20, []int64{1, 2, 3, 4, 5, 6}, false},
		{3, 300, []int64{4, 5, 6}, false},
		{3, 0, []int64{4, 5, 6}, false}, // no byte bound
		{6, 1, nil, false},
	} {
		list, more, err := pg.EventsAfter(ctx, "a", tt.after, 10, tt.maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, e := range list {
			got = append(got, e.Pos)
		}
		if !slices.Equal(got, tt.want) || more != tt.more {
			t.Errorf("EventsAfter(a, %d, 10, %d) = %v more %v; want %v more %v", tt.after, tt.maxBytes, got, more, tt.want, tt.more)
		}
	}
	// The count still bounds a page of small events.
	if list, more, err := pg.EventsAfter(ctx, "a", 3, 2, 1<<20); err != nil || len(list) != 2 || list[1].Pos != 5 || !more {
		t.Errorf("EventsAfter(a, 3, 2, 1 MiB) = %d events, more %v, %v; want 4 and 5, more", len(list), more, err)
	}
	for _, maxBytes := range []int{1, 250, 1100} {
		got := pageEvents(t, pg, "a", 10, maxBytes)
		if len(got) != len(all) {
			t.Fatalf("maxBytes %d: paged %d events; want %d", maxBytes, len(got), len(all))
		}
		for i := range all {
			if got[i].Pos != all[i].Pos || string(got[i].Body) != string(all[i].Body) {
				t.Fatalf("maxBytes %d: page entry %d = pos %d; want %d", maxBytes, i, got[i].Pos, all[i].Pos)
			}
		}
	}
}

// pageEvents reads session id's whole log with EventsAfter, limit and
// maxBytes a page, following more, checking that no page is longer or,
// past its first entry, larger.
func pageEvents(t *testing.T, pg store.EventPager, id string, limit, maxBytes int) []store.Event {
	t.Helper()
	var out []store.Event
	for after := int64(0); ; {
		page, more, err := pg.EventsAfter(context.Background(), id, after, limit, maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > limit {
			t.Fatalf("EventsAfter(limit %d) returned %d", limit, len(page))
		}
		sum := 0
		for _, e := range page {
			sum += len(e.Body)
		}
		if maxBytes > 0 && len(page) > 1 && sum > maxBytes {
			t.Fatalf("EventsAfter(maxBytes %d) returned %d events of %d bytes", maxBytes, len(page), sum)
		}
		out = append(out, page...)
		if !more {
			return out
		}
		if len(page) == 0 {
			t.Fatalf("EventsAfter(%s, %d) returned no event but more", id, after)
		}
		after = page[len(page)-1].Pos
	}
}

func testPendingPermissions(t *testing.T, s store.Store) {
	pf, ok := s.(store.PendingPermissionFinder)
	if !ok {
		t.Skipf("%T does not find pending permissions", s)
	}
	ctx := context.Background()
	perm := func(seq int64, status string) store.Artifact {
		// Canonical JSON, as the server stores artifact bodies.
		return store.Artifact{Seq: seq, Rev: seq, Body: fmt.Appendf(nil, `{"seq":%d,"status":%q,"type":"permission"}`, seq, status)}
	}
	commit(t, s,
		store.CreateSession{Session: session("pending", 1, "")},
		store.CreateSession{Session: session("answered", 1, "")},
		store.CreateSession{Session: session("none", 1, "")},
		store.PutArtifacts{SessionID: "pending", Artifacts: []store.Artifact{perm(1, "approved"), perm(2, "pending")}},
		store.PutArtifacts{SessionID: "answered", Artifacts: []store.Artifact{perm(1, "pending")}},
		store.PutArtifacts{SessionID: "none", Artifacts: []store.Artifact{artifact(t, 1, 1, "x")}},
	)
	// Answered later: the full body replaces the pending one.
	commit(t, s, store.PutArtifacts{SessionID: "answered", Artifacts: []store.Artifact{perm(1, "denied")}})
	ids, err := pf.PendingPermissionSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A superset is allowed; it must hold "pending" and need not hold the
	// others, but a finder that returns everything proves nothing.
	if !slices.Contains(ids, "pending") || slices.Contains(ids, "none") || slices.Contains(ids, "answered") {
		t.Errorf("PendingPermissionSessions = %v; want [pending]", ids)
	}
}

func testChangeBatches(t *testing.T, s store.Store) {
	cl, ok := s.(store.ChangeLog)
	if !ok {
		t.Skipf("%T keeps no change batches", s)
	}
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "")}, store.CreateSession{Session: session("b", 1, "")})
	b := func(from, to int64) store.ChangeBatch {
		return store.ChangeBatch{FromRev: from, ToRev: to, At: 1000 + from, Body: []byte(fmt.Sprintf("[%d,%d]", from, to))}
	}
	commit(t, s, store.PutChanges{SessionID: "a", Batch: b(0, 3)}, store.PutChanges{SessionID: "b", Batch: b(0, 1)})
	commit(t, s, store.PutChanges{SessionID: "a", Batch: b(3, 4)}, store.PutChanges{SessionID: "a", Batch: b(4, 9)})
	const all = 1 << 20
	for _, c := range []struct {
		after, before int64
		maxBytes      int
		want          []store.ChangeBatch
	}{
		{3, math.MaxInt64, all, []store.ChangeBatch{b(3, 4), b(4, 9)}},
		// Up to before, not past it.
		{0, 4, all, []store.ChangeBatch{b(0, 3), b(3, 4)}},
		// Up to the batch that brings the bodies (5 bytes each) to
		// maxBytes, and the first whatever its size.
		{0, math.MaxInt64, 6, []store.ChangeBatch{b(0, 3), b(3, 4)}},
		{0, math.MaxInt64, 10, []store.ChangeBatch{b(0, 3), b(3, 4)}},
		{0, math.MaxInt64, 11, []store.ChangeBatch{b(0, 3), b(3, 4), b(4, 9)}},
		{0, math.MaxInt64, 1, []store.ChangeBatch{b(0, 3)}},
	} {
		got, err := cl.ChangeBatches(ctx, "a", c.after, c.before, c.maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, c.want, func(x, y store.ChangeBatch) bool {
			return x.FromRev == y.FromRev && x.ToRev == y.ToRev && x.At == y.At && string(x.Body) == string(y.Body)
		}) {
			t.Errorf("ChangeBatches(a, %d, %d, %d) = %+v; want %+v", c.after, c.before, c.maxBytes, got, c.want)
		}
	}
	commit(t, s, store.DeleteSession{ID: "a"})
	if got, err := cl.ChangeBatches(ctx, "a", 0, math.MaxInt64, all); err != nil || len(got) != 0 {
		t.Errorf("after delete: %+v, %v; want none", got, err)
	}
}

// testStaging holds a Stager to its contract: staged events are part of
// the log at once, in order after the moved ones, whatever the page; a
// position at or below the session's highest is refused whether that
// highest is staged or moved; Unstage moves everything and changes no
// read; a deleted session leaves nothing staged.
func testStaging(t *testing.T, s store.Store) {
	sg, ok := s.(store.Stager)
	if !ok {
		t.Skipf("%T stages nothing", s)
	}
	ctx := context.Background()
	ev := func(from, to int64) []store.Event {
		var out []store.Event
		for pos := from; pos <= to; pos++ {
			out = append(out, store.Event{Pos: pos, Instance: "i", AgentSeq: pos, Body: fmt.Appendf(nil, `{"n":%d}`, pos)})
		}
		return out
	}
	staged := func() []string {
		t.Helper()
		ids, err := sg.StagedSessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids)
		return ids
	}
	wantLog := func(id string, n int64) {
		t.Helper()
		got, err := s.Events(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(got)) != n {
			t.Fatalf("Events(%s) has %d entries; want %d", id, len(got), n)
		}
		for i, e := range got {
			if e.Pos != int64(i)+1 || string(e.Body) != fmt.Sprintf(`{"n":%d}`, i+1) {
				t.Fatalf("Events(%s)[%d] = %+v", id, i, e)
			}
		}
		if pg, ok := s.(store.EventPager); ok {
			if paged := pageEvents(t, pg, id, 3, 0); len(paged) != len(got) {
				t.Fatalf("EventsAfter pages of %s hold %d entries; want %d", id, len(paged), len(got))
			}
			// Cut by bytes too (each body is 8 or 9 bytes), the
			// pages crossing from events to staged rows.
			if paged := pageEvents(t, pg, id, 10, 20); len(paged) != len(got) {
				t.Fatalf("EventsAfter pages of %s hold %d entries; want %d", id, len(paged), len(got))
			}
		}
	}
	commit(t, s, store.CreateSession{Session: session("a", 1, "")}, store.CreateSession{Session: session("b", 1, "")})
	// Not asked to stage: straight into the log.
	commit(t, s, store.AppendEvents{SessionID: "a", Events: ev(1, 2)})
	if got := staged(); len(got) != 0 {
		t.Errorf("StagedSessions = %v; want none", got)
	}
	commit(t, s, store.AppendEvents{SessionID: "a", Events: ev(3, 3), Stage: true}, store.AppendEvents{SessionID: "b", Events: ev(1, 2), Stage: true})
	// Not asked, but a has staged events: staged too, or the log would
	// read out of order.
	commit(t, s, store.AppendEvents{SessionID: "a", Events: ev(4, 4)})
	if got := staged(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("StagedSessions = %v; want [a b]", got)
	}
	wantLog("a", 4)
	commitFails(t, s, store.AppendEvents{SessionID: "a", Events: ev(4, 5), Stage: true}) // 4 is staged
	commitFails(t, s, store.AppendEvents{SessionID: "a", Events: ev(2, 2), Stage: true}) // 2 is in the log
	commit(t, s, store.AppendEvents{SessionID: "a", Events: ev(5, 7), Stage: true}, store.Unstage{})
	if got := staged(); len(got) != 0 {
		t.Errorf("StagedSessions after Unstage = %v; want none", got)
	}
	wantLog("a", 7)
	wantLog("b", 2)
	commitFails(t, s, store.AppendEvents{SessionID: "a", Events: ev(7, 7), Stage: true}) // 7 was moved
	// Moved and staged rows read as one log, in pages that cross them.
	commit(t, s, store.AppendEvents{SessionID: "a", Events: ev(8, 11), Stage: true})
	wantLog("a", 11)
	// A failed commit leaves what was staged before it.
	commitFails(t, s, store.AppendEvents{SessionID: "a", Events: ev(12, 12), Stage: true}, store.Unstage{}, store.UpdateSession{Session: store.Session{Session: session("missing", 1, "")}})
	if got := staged(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("StagedSessions after a failed commit = %v; want [a]", got)
	}
	commit(t, s, store.AppendEvents{SessionID: "a", Events: ev(12, 12), Stage: true})
	wantLog("a", 12)
	// Staging to a missing session fails, as appending to the log does,
	// also when the session is deleted earlier in the same commit.
	err := s.Commit(ctx, []store.Op{store.AppendEvents{SessionID: "ghost", Events: ev(1, 1), Stage: true}})
	if protocol.CodeOf(err) != protocol.CodeNotFound {
		t.Errorf("staging to a missing session: %v; want %s", err, protocol.CodeNotFound)
	}
	commitFails(t, s, store.DeleteSession{ID: "b"}, store.AppendEvents{SessionID: "b", Events: ev(3, 3), Stage: true})
	wantLog("b", 2)
	commit(t, s, store.DeleteSession{ID: "a"})
	if got := staged(); len(got) != 0 {
		t.Errorf("StagedSessions after deleting a = %v; want none", got)
	}
	commit(t, s, store.CreateSession{Session: session("a", 2, "")}, store.AppendEvents{SessionID: "a", Events: ev(1, 1), Stage: true})
	wantLog("a", 1)
	commit(t, s, store.Unstage{})
	wantLog("a", 1)
	wantLog("b", 2)
}
