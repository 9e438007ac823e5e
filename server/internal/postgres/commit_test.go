package postgres

import (
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/store"
)

// One UPDATE … FROM cannot write a row twice (PostgreSQL uses one of the
// matching rows, unpredictably), so a session's second row update in a
// commit must start a new segment; the conformance test's commit cannot
// tell, since which row wins depends on the plan.
func TestSegmentEndsAtASessionsSecondUpdate(t *testing.T) {
	row := func(id string) store.UpdateSession {
		return store.UpdateSession{Session: store.Session{Session: protocol.Session{ID: id}}}
	}
	var seg segment
	for _, op := range []store.Op{row("a"), store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: 1}}}, row("b"), store.Expect{SessionID: "a"}} {
		if !seg.add(op) {
			t.Fatalf("add(%T) = false; want it taken", op)
		}
	}
	if seg.add(row("a")) {
		t.Fatal("add(a's second update) = true; want the segment to end")
	}
	if seg.add(store.DeleteSession{ID: "c"}) {
		t.Fatal("add(DeleteSession) = true; want it written alone")
	}
	var p plan
	seg.flush(&p)
	if want := []string{"append 1 events from session=a", "update 2 sessions from a"}; len(p.what) != len(want) || p.what[0] != want[0] || p.what[1] != want[1] {
		t.Fatalf("flush queued %q; want %q", p.what, want)
	}
	if !p.notFound[1] {
		t.Error("the update statement does not map no_data_found to a missing session")
	}
	if !seg.add(row("a")) {
		t.Error("after the flush, a's update is not taken")
	}
}
