package server

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/rein-ai/rein/server/store"
)

// The cache's size estimate is within a factor of two of the heap a
// folded state really holds, for sessions of short turns and of long
// streamed text: a much lower estimate would let the cache outgrow its
// budget, a much higher one would evict for nothing.
//
// Not under the race detector, which makes each fold about six times
// slower (this test took 36-40 s of the package's run, 6 s without it)
// and changes what is allocated, as the standard library's allocation
// tests skip under it too. make test runs the server's tests once
// without it, on PostgreSQL (this test needs no database), so it runs
// there.
func TestStateSizeEstimate(t *testing.T) {
	// Not parallel: it measures the heap of the whole test binary.
	if raceEnabled {
		t.Skip("measures the heap, which the race detector changes, and takes 40 s under it; it runs in the suite's pass without -race (make test-pg)")
	}
	for _, tc := range []struct {
		name       string
		turns      int
		deltas     int
		deltaBytes int
		// n states are measured together, enough that other goroutines
		// of the test binary cannot move the figure much.
		n int
		// open: the last turn has not completed, so its bodies are held.
		open bool
	}{
		{"one short turn", 1, 8, 20, 1000, false},
		{"many short turns", 20, 8, 20, 500, false},
		{"long text", 2, 50, 400, 1000, false},
		{"many turns", 400, 8, 20, 20, false},
		{"open turn of long text", 2, 50, 400, 200, true},
		{"open short turn", 1, 8, 20, 1000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := sessionLog(t, tc.turns, tc.deltas, tc.deltaBytes)
			if tc.open {
				log = log[:len(log)-1] // the last turn_completed
			}
			n := tc.n
			states := make([]*state, n)
			var before, after runtime.MemStats
			settleHeap()
			runtime.ReadMemStats(&before)
			for i := range states {
				s, err := foldLog(log)
				if err != nil {
					t.Fatal(err)
				}
				s.st.Release() // as writer.state caches it
				states[i] = s
			}
			settleHeap()
			runtime.ReadMemStats(&after)
			measured := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
			estimate := float64(states[0].size())
			runtime.KeepAlive(states)
			t.Logf("measured %.0f bytes per state, estimate %.0f (log %d bytes)", measured, estimate, states[0].logBytes)
			if estimate < measured/2 || estimate > measured*2 {
				t.Fatalf("estimate %.0f bytes; a folded state holds %.0f", estimate, measured)
			}
		})
	}
}

// settleHeap collects until the heap holds only what is reachable. One
// GC is not enough: what sync.Pools held survives it in their victim
// caches, and an object with a finalizer survives until the GC after the
// finalizer ran. After the whole package had run once (go test -count=2),
// about 19 MB that earlier tests left behind was freed between the two
// readings of a single GC each, and the figure came out negative.
func settleHeap() {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	for range 10 {
		was := m.HeapAlloc
		runtime.GC()
		runtime.ReadMemStats(&m)
		if m.HeapAlloc >= was {
			return
		}
	}
}

// sessionLog is a stored log of turns, each a prompt, a tool call with
// output and a streamed answer.
func sessionLog(t *testing.T, turns, deltas, deltaBytes int) []store.Event {
	var log []store.Event
	add := func(kv ...any) {
		m := map[string]any{"receivedAt": 1_800_000_000_000 + len(log)}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, store.Event{Pos: int64(len(log) + 1), Instance: "i1", AgentSeq: int64(len(log) + 1), Body: b})
	}
	for i := range turns {
		id := fmt.Sprint("t", i)
		add("type", "turn_started", "turnId", id, "source", "user")
		add("type", "user_message", "text", "please do the thing number "+id, "turnId", id)
		add("type", "tool_call_start", "id", "x"+id, "name", "bash", "kind", "execute", "title", "go test")
		add("type", "tool_call_update", "id", "x"+id, "output", strings.Repeat("o", 200))
		add("type", "tool_call_end", "id", "x"+id, "status", "completed")
		for range deltas {
			add("type", "text_delta", "delta", strings.Repeat("d", deltaBytes))
		}
		add("type", "turn_completed", "turnId", id, "stopReason", "end_turn")
	}
	return log
}
