package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
	reinclient "github.com/rein-ai/rein/server/client"
)

// A server whose state cache holds almost nothing evicts a session's
// reducer state as soon as another session is used; the session then
// goes on exactly as on a server that kept it: the same answers (dedupe
// included), revisions, artifacts and turn digests.
func TestEvictedStateContinuesExactly(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_800_000_000_000)
	clock := func() time.Time { return now }
	ref := start(t, app.Options{Now: clock})
	// A third server with the same budget, whose states count as active
	// (the clock stands still): the budget does not evict them.
	busy := start(t, app.Options{Now: clock, StateCacheBytes: 1})
	tiny := start(t, app.Options{Now: clock, StateCacheBytes: 1, ActiveState: -1})
	steps := []struct {
		id   string
		body []any
	}{
		{"a", twoTurns()},
		{"b", []any{ev("turn_started", "turnId", "u1", "source", "user", "agentSeq", 1), ev("text_delta", "delta", "other session", "agentSeq", 2)}},
		// A retry of a's last two events and one new event.
		{"a", []any{
			ev("usage_updated", "inputTokens", 10, "outputTokens", 5, "agentSeq", 6),
			ev("turn_started", "turnId", "t2", "source", "user", "agentSeq", 8),
			ev("text_delta", "delta", "more", "agentSeq", 9),
		}},
		{"b", []any{ev("text_delta", "delta", " again", "agentSeq", 3)}},
		{"a", []any{
			ev("text_delta", "delta", "more", "agentSeq", 9),
			ev("turn_completed", "turnId", "t2", "stopReason", "end_turn", "agentSeq", 10),
		}},
	}
	for _, s := range []*app.App{ref, tiny, busy} {
		c := newClient(t, s)
		c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
		c.must(http.StatusCreated, nil, "POST", "/sessions/b", nil)
	}
	for i, step := range steps {
		var want, got protocol.EventsAccepted
		newClient(t, ref).must(http.StatusAccepted, &want, "POST", "/sessions/"+step.id+"/events", step.body, protocol.HeaderInstance, "i1")
		newClient(t, tiny).must(http.StatusAccepted, &got, "POST", "/sessions/"+step.id+"/events", step.body, protocol.HeaderInstance, "i1")
		newClient(t, busy).must(http.StatusAccepted, nil, "POST", "/sessions/"+step.id+"/events", step.body, protocol.HeaderInstance, "i1")
		if got != want {
			t.Fatalf("step %d (%s): evicting server answered %+v; the reference %+v", i, step.id, got, want)
		}
		if i == len(steps)-1 {
			break // a's turn completed: see below
		}
		other := map[string]string{"a": "b", "b": "a"}[step.id]
		if i > 0 {
			if ids, _ := server.CachedStates(tiny.Server); ids[other] || !ids[step.id] {
				t.Fatalf("step %d: cached states %v; want only %s's (the budget holds one)", i, ids, step.id)
			}
		}
		if ids, n := server.CachedStates(ref.Server); i > 0 && (len(ids) != 2 || n <= 0) {
			t.Fatalf("step %d: the reference server caches %v (%d bytes); want a and b", i, ids, n)
		}
		if ids, _ := server.CachedStates(busy.Server); i > 0 && len(ids) != 2 {
			t.Fatalf("step %d: active states evicted for the byte budget: cached %v", i, ids)
		}
	}
	// The last step completed a's turn: its small state is dropped at once
	// everywhere; b's turn is open and stays on the reference server.
	if ids, _ := server.CachedStates(ref.Server); ids["a"] || !ids["b"] {
		t.Fatalf("after a's turn completed the reference server caches %v; want only b", ids)
	}
	for _, id := range []string{"a", "b"} {
		if w, g := storedRev(t, ref, id), storedRev(t, tiny, id); w != g {
			t.Fatalf("%s: revision %d after evictions; the reference has %d", id, g, w)
		}
		var want, got []json.RawMessage
		newClient(t, ref).must(http.StatusOK, &want, "GET", "/sessions/"+id+"/artifacts", nil)
		newClient(t, tiny).must(http.StatusOK, &got, "GET", "/sessions/"+id+"/artifacts", nil)
		if string(mustJSON(t, want)) != string(mustJSON(t, got)) {
			t.Fatalf("%s: artifacts differ\nreference %s\nevicting  %s", id, want, got)
		}
	}
	var want, got []protocol.Turn
	newClient(t, ref).must(http.StatusOK, &want, "GET", "/sessions/a/turns", nil)
	newClient(t, tiny).must(http.StatusOK, &got, "GET", "/sessions/a/turns", nil)
	if len(got) != 2 || string(mustJSON(t, want)) != string(mustJSON(t, got)) {
		t.Fatalf("turns differ\nreference %+v\nevicting  %+v", want, got)
	}
	cl, err := reinclient.New(tiny.URL(), "")
	if err != nil {
		t.Fatal(err)
	}
	v, err := cl.Verify(context.Background(), "a", 0)
	if err != nil || v.FirstMismatch != nil || v.Verified != 2 {
		t.Fatalf("verify on the evicting server: %+v, %v", v, err)
	}
}
