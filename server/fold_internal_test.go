package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/sqlite"
	"github.com/rein-ai/rein/server/store"
)

// logEntries makes the events a log, positions and agentSeqs from 1.
func logEntries(evs [][]byte) []store.Event {
	log := make([]store.Event, len(evs))
	for i, b := range evs {
		log[i] = store.Event{Pos: int64(i + 1), Instance: "i1", AgentSeq: int64(i + 1), Body: b}
	}
	return log
}

// eventLog is one event log of goldenLogs: its name and its lines.
type eventLog struct {
	name  string
	lines [][]byte
}

// goldenLogs returns the reducer's golden event logs (at least five,
// named for their directories, in name order) and, last, one more named
// name whose JSON lines are text: the cases a test adds to them.
func goldenLogs(t *testing.T, name, text string) []eventLog {
	t.Helper()
	paths, err := filepath.Glob("../reducer/testdata/*/events.jsonl")
	if err != nil || len(paths) < 5 {
		t.Fatalf("the reducer's golden logs: %v, %v", paths, err)
	}
	var logs []eventLog
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, eventLog{filepath.Base(filepath.Dir(p)), splitLines(b)})
	}
	return append(logs, eventLog{name, splitLines([]byte(text))})
}

// splitLines returns the non-blank lines of b, trimmed.
func splitLines(b []byte) [][]byte {
	var out [][]byte
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			out = append(out, line)
		}
	}
	return out
}

// storeLog stores the events as session id's log in a fresh SQLite file.
func storeLog(t *testing.T, id string, evs [][]byte) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "rein.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := logEntries(evs)
	ops := []store.Op{store.CreateSession{Session: protocol.Session{ID: id, Status: protocol.StatusLive, CreatedAt: 1}}}
	for len(log) > 0 {
		n := min(len(log), 500)
		ops = append(ops, store.AppendEvents{SessionID: id, Events: log[:n]})
		log = log[n:]
	}
	if err := st.Commit(t.Context(), ops); err != nil {
		t.Fatal(err)
	}
	return st
}

// sameState fails unless the two folds of one log are the same state:
// the reducer's (artifacts held and released, revisions, everything it
// keeps) and what dedupe, the caps and the digests keep beside it.
func sameState(t *testing.T, got, want *state) {
	t.Helper()
	if got.st.Rev() != want.st.Rev() || got.st.Len() != want.st.Len() {
		t.Fatalf("rev %d, %d artifacts; want rev %d, %d artifacts", got.st.Rev(), got.st.Len(), want.st.Rev(), want.st.Len())
	}
	for seq := int64(1); seq <= int64(want.st.Len()); seq++ {
		if got.st.Held(seq) != want.st.Held(seq) {
			t.Fatalf("seq %d held: %v; want %v", seq, got.st.Held(seq), want.st.Held(seq))
		}
		if !want.st.Held(seq) {
			continue
		}
		g, _, err := got.st.ArtifactJSON(seq)
		if err != nil {
			t.Fatal(err)
		}
		w, _, err := want.st.ArtifactJSON(seq)
		if err != nil {
			t.Fatal(err)
		}
		if string(g) != string(w) {
			t.Fatalf("seq %d:\n%s\nwant\n%s", seq, g, w)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the states differ beyond their artifacts:\n%+v\nwant\n%+v", got, want)
	}
}

// A state rebuilt from a long log (after an eviction or a restart)
// releases closed artifacts' bodies as it folds, so it holds about its
// open artifacts and releaseEvery, not every tool output the session
// printed; and it is the state the fold that holds everything ends with,
// once that one releases too.
func TestFoldReleasingHoldsOnlyWhatMayChange(t *testing.T) {
	t.Parallel()
	const turns, outputBytes = 12, 1 << 20
	var evs [][]byte
	add := func(format string, args ...any) { evs = append(evs, fmt.Appendf(nil, format, args...)) }
	chunk := strings.Repeat("y", 64<<10)
	for i := range turns {
		add(`{"type":"turn_started","turnId":"t%d","source":"user"}`, i)
		add(`{"type":"user_message","text":"run %d"}`, i)
		add(`{"type":"tool_call_start","id":"c%d","name":"shell","kind":"execute"}`, i)
		for range outputBytes / len(chunk) {
			add(`{"type":"tool_output_delta","id":"c%d","delta":"%s"}`, i, chunk)
		}
		add(`{"type":"tool_call_end","id":"c%d","status":"completed"}`, i)
		add(`{"type":"text_delta","delta":"done %d"}`, i)
		add(`{"type":"turn_completed","turnId":"t%d","stopReason":"end_turn"}`, i)
	}
	// The last turn is still running its tool.
	add(`{"type":"turn_started","turnId":"open","source":"user"}`)
	add(`{"type":"tool_call_start","id":"last","name":"shell","kind":"execute"}`)
	add(`{"type":"tool_output_delta","id":"last","delta":"%s"}`, chunk)
	st := storeLog(t, "s", evs)

	full, err := foldStored(t.Context(), st, "s")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := foldReleasing(t.Context(), st, "s")
	if err != nil {
		t.Fatal(err)
	}
	if held := full.st.Size(); held < turns*outputBytes {
		t.Fatalf("the fold that holds everything holds %d bytes; want the %d of output at least", held, turns*outputBytes)
	}
	// What the releasing fold holds at its end is at most what it let
	// pile up since its last release, beside the open tool.
	if held, most := rel.st.Size(), int64(releaseEvery+2*outputBytes); held > most {
		t.Fatalf("the releasing fold holds %d bytes at its end; want at most %d", held, most)
	}
	full.st.Release()
	rel.st.Release()
	sameState(t, rel, full)
	if !rel.st.Held(rel.st.Newest(protocol.ArtifactToolCall, "last")) {
		t.Fatal("the running tool's output was released")
	}
}

// Over every reducer golden log, releasing after every event (the most
// a releasing fold can release), the fold either ends with the state
// the fold that holds everything ends with (once released), or stops at
// an event that changes an artifact it released, where foldReleasing
// folds again holding everything; both happen among the goldens.
func TestFoldReleasingIsTheFold(t *testing.T) {
	t.Parallel()
	// A log whose events change artifacts already closed: a second
	// text_end naming a finished block, a late tool_call_end (in the
	// same turn: an id names an artifact of the turn it is used in).
	logs := goldenLogs(t, "late", `{"type":"turn_started","turnId":"t1","source":"user"}
{"type":"tool_call_start","id":"c1","name":"shell","kind":"execute"}
{"type":"tool_output_delta","id":"c1","delta":"out"}
{"type":"tool_call_end","id":"c1","status":"completed"}
{"type":"text_delta","id":"m1","delta":"a"}
{"type":"text_end","id":"m1"}
{"type":"text_delta","id":"m2","delta":"b"}
{"type":"text_end","id":"m1","text":"a, again"}
{"type":"tool_call_end","id":"c1","status":"failed","output":"late"}
{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}
`)
	var completed, refolded int
	for _, l := range logs {
		t.Run(l.name, func(t *testing.T) {
			evs := l.lines
			for _, line := range evs {
				var ev protocol.Event
				if err := json.Unmarshal(line, &ev); err != nil {
					t.Fatalf("%s: %v", line, err)
				}
			}
			st := storeLog(t, "s", evs)
			ctx := context.Background()
			full, err := foldStored(ctx, st, "s")
			if err != nil {
				t.Fatal(err)
			}
			// Through the revision of the log's middle, as a session
			// whose stored artifacts lag (settleStale): every artifact
			// changed after it is held, as the full fold has it.
			mid, err := foldLog(logEntries(evs[:len(evs)/2]))
			if err != nil {
				t.Fatal(err)
			}
			through := mid.st.Rev()
			lag, err := foldReleasingEvery(ctx, st, "s", 0, through)
			if errors.Is(err, errReleasedNeeded) {
				lag, err = foldReleasingThrough(ctx, st, "s", through)
			}
			if err != nil {
				t.Fatal(err)
			}
			laggingHeld := 0
			for seq := int64(1); seq <= int64(full.st.Len()); seq++ {
				if a := full.st.ArtifactHead(seq); a.Rev > through {
					g, _, err := lag.st.ArtifactJSON(seq)
					if err != nil || g == nil {
						t.Fatalf("through rev %d: seq %d (rev %d) not held: %v", through, seq, a.Rev, err)
					}
					w, _, _ := full.st.ArtifactJSON(seq)
					if string(g) != string(w) {
						t.Fatalf("through rev %d: seq %d:\n%s\nwant\n%s", through, seq, g, w)
					}
					laggingHeld++
				}
			}
			if laggingHeld == 0 {
				t.Fatalf("no artifact changed after rev %d of %d", through, full.st.Rev())
			}
			full.st.Release()
			lag.st.Release()
			sameState(t, lag, full)
			each, err := foldReleasingEvery(ctx, st, "s", 0, math.MaxInt64)
			switch {
			case errors.Is(err, errReleasedNeeded):
				refolded++
			case err != nil:
				t.Fatal(err)
			default:
				completed++
				each.st.Release()
				sameState(t, each, full)
			}
			rel, err := foldReleasing(ctx, st, "s")
			if err != nil {
				t.Fatal(err)
			}
			rel.st.Release()
			sameState(t, rel, full)
		})
	}
	if completed == 0 || refolded == 0 {
		t.Fatalf("%d golden logs folded releasing to the end, %d were folded again; want some of each", completed, refolded)
	}
	t.Logf("%d golden logs folded releasing to the end, %d were folded again", completed, refolded)
}
