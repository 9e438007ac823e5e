package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
)

// A busy session's cached state holds what folding the next event needs,
// not its transcript: after many turns it stays a few KiB while the text
// is a MiB. Late events that change finished artifacts (a tool's second
// end, a delta and a final text for a finished block, a permission for a
// finished tool) read them back from the store, and the stored artifacts
// and revision equal a fold of the whole log that kept everything.
func TestStateHoldsNoTextYetContinuesExactly(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_800_000_000_000)
	srv := start(t, app.Options{Now: func() time.Time { return now }})
	c := newClient(t, srv)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	var log []map[string]any
	post := func(evs ...map[string]any) {
		t.Helper()
		body := make([]any, len(evs))
		for i, e := range evs {
			body[i] = e
		}
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", body, protocol.HeaderInstance, "i1")
		log = append(log, evs...)
	}
	const turns = 60
	text := 0
	for n := range turns {
		k := fmt.Sprint(n)
		post(ev("turn_started", "turnId", "t"+k, "source", "user"), ev("user_message", "id", "u"+k, "text", "prompt "+k))
		for d := range 4 {
			delta := strings.Repeat("w", 2000) + fmt.Sprint(d)
			text += 2 * len(delta)
			post(ev("text_delta", "id", "m"+k, "delta", delta),
				ev("tool_output_delta", "id", "c"+k, "delta", delta))
		}
		post(ev("tool_call_update", "id", "c"+k, "title", "ls > out & <x>", "input", "ls > out & <x>"),
			ev("tool_call_end", "id", "c"+k, "status", "completed", "exitCode", 0),
			ev("text_end", "id", "m"+k),
			ev("turn_completed", "turnId", "t"+k, "stopReason", "end_turn"),
			ev("usage_updated", "outputTokens", n))
	}
	if ids, bytes := server.CachedStates(srv.Server); !ids["a"] || bytes > 64<<10 {
		t.Fatalf("after %d turns (%d bytes of text) the cache holds %v in %d bytes; want a's state in at most 64 KiB", turns, text, ids, bytes)
	}
	// Late events, outside any turn, for finished artifacts.
	post(ev("tool_call_end", "id", "c3", "status", "failed", "error", "late"),
		ev("text_delta", "id", "m5", "delta", " and more"))
	post(ev("text_end", "id", "m7", "text", "the final word"),
		ev("tool_call_update", "id", "c9", "title", "ls > out & <x>", "input", "ls > out & <x>"))
	post(ev("permission_requested", "id", "p1", "toolCallId", "c11", "title", "again?",
		"options", []any{map[string]any{"id": "y", "name": "Yes", "kind": "allow_once"}}))
	// In a new turn an old id names a new artifact, not the released one.
	post(ev("turn_started", "turnId", "t-last", "source", "user"), ev("text_delta", "id", "m2", "delta", "new block"),
		ev("tool_call_end", "id", "c4", "status", "completed"))

	events := make([]protocol.Event, len(log))
	for i, e := range log {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &events[i]); err != nil {
			t.Fatal(err)
		}
		events[i].ReceivedAt = now.UnixMilli()
	}
	full := reducer.Fold(events)
	if got := storedRev(t, srv, "a"); got != full.Rev() {
		t.Fatalf("stored revision %d; a full fold has %d", got, full.Rev())
	}
	var got []json.RawMessage
	c.must(http.StatusOK, &got, "GET", "/sessions/a/artifacts", nil)
	want := full.Artifacts()
	if len(got) != len(want) {
		t.Fatalf("%d artifacts stored; a full fold has %d", len(got), len(want))
	}
	for i, a := range want {
		w, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if string(got[i]) != string(w) {
			t.Fatalf("artifact %d stored as\n%s\na full fold has\n%s", i+1, got[i], w)
		}
	}
	var approvals []protocol.Approval
	c.must(http.StatusOK, &approvals, "GET", "/approvals", nil)
	if len(approvals) != 1 || approvals[0].Tool == nil || approvals[0].Tool.Title != "ls > out & <x>" {
		t.Fatalf("approvals %+v; want p1 naming the finished tool c11 by its title", approvals)
	}
}
