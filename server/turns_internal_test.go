package server

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
)

// The turns fold every event with its texts cut to a byte (withoutText).
// Over every reducer golden log, that fold and the full one create the
// same artifacts, with the same fields but the streamed text and the
// revision, and end the same turns at the same events: everything the
// turns read.
func TestTurnsFoldWithoutText(t *testing.T) {
	t.Parallel()
	// Empty texts, which the reducer treats apart (an empty final text
	// for a block never streamed creates none), and final texts equal to
	// or other than what streamed.
	logs := goldenLogs(t, "empties", `{"type":"turn_started","turnId":"t1","source":"user"}
{"type":"text_end","id":"never","text":""}
{"type":"reasoning_end","id":"never-r","text":""}
{"type":"text_delta","id":"m1","delta":""}
{"type":"text_end","id":"m1","text":""}
{"type":"text_delta","id":"m2","delta":"same"}
{"type":"text_end","id":"m2","text":"same"}
{"type":"text_delta","id":"m3","delta":"one"}
{"type":"text_end","id":"m3","text":"other"}
{"type":"text_end","id":"m4","text":"only at the end"}
{"type":"reasoning_end","id":"r1","text":"","redacted":true}
{"type":"tool_call_start","id":"c1","name":"shell","kind":"execute"}
{"type":"tool_output_delta","id":"c1","delta":""}
{"type":"tool_call_end","id":"c1","status":"completed","output":""}
{"type":"tool_output_delta","id":"c2","delta":"orphan"}
{"type":"tool_call_end","id":"c2","status":"failed","output":"final"}
{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}
`)
	for _, l := range logs {
		t.Run(l.name, func(t *testing.T) {
			full, cut := reducer.New(), reducer.New()
			for i, line := range l.lines {
				var ev protocol.Event
				if err := json.Unmarshal(line, &ev); err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				a, b := full.Apply(ev), cut.Apply(withoutText(ev))
				if x, y := endedIDs(full, a), endedIDs(cut, b); !reflect.DeepEqual(x, y) {
					t.Fatalf("event %d (%s) ends turns %v in the full fold, %v without text", i, ev.Type, x, y)
				}
				if x, y := createdSeqs(a), createdSeqs(b); !reflect.DeepEqual(x, y) {
					t.Fatalf("event %d (%s) creates %v in the full fold, %v without text", i, ev.Type, x, y)
				}
			}
			if full.Len() != cut.Len() || full.Status() != cut.Status() || full.Summary() != cut.Summary() {
				t.Fatalf("%d artifacts, status %q, summary %q; without text %d, %q, %q", full.Len(), full.Status(), full.Summary(), cut.Len(), cut.Status(), cut.Summary())
			}
			for seq := int64(1); seq <= int64(full.Len()); seq++ {
				x, y := full.ArtifactHead(seq), cut.ArtifactHead(seq)
				if x != nil && y != nil {
					x.Rev, y.Rev = 0, 0
				}
				if !reflect.DeepEqual(x, y) {
					t.Errorf("artifact %d: %+v in the full fold, %+v without text", seq, x, y)
				}
			}
		})
	}
}

func endedIDs(st *reducer.State, changes []reducer.Change) []string {
	var ids []string
	for _, a := range endedTurns(st, changes) {
		ids = append(ids, a.ID)
	}
	return ids
}

func createdSeqs(changes []reducer.Change) []int64 {
	var seqs []int64
	for _, c := range changes {
		if c.Kind == reducer.Created {
			seqs = append(seqs, c.Seq)
		}
	}
	return seqs
}
