package reducer_test

import (
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
)

// decodeLog decodes wire events, one JSON object a line, through the
// protocol decoder (what the server accepts), stamping deterministic times.
func decodeLog(tb testing.TB, lines ...string) []protocol.Event {
	tb.Helper()
	out := make([]protocol.Event, 0, len(lines))
	for i, l := range lines {
		evs, err := protocol.DecodeEvents([]byte(l))
		if err != nil {
			tb.Fatalf("event %d %s: %v", i, l, err)
		}
		evs[0].ReceivedAt = 1_700_000_000_000 + int64(i)
		out = append(out, evs[0])
	}
	return out
}

// field is what an artifact says in one field, as a client reads it.
type field struct {
	seq   int64
	field string
	want  string
}

// checkFields folds log and holds each artifact's field to what is true
// after it; the reducer's general promises (revisions, release and
// restore, client models) are checked on the same log.
func checkFields(t *testing.T, log []protocol.Event, want []field) {
	t.Helper()
	s := reducer.Fold(log)
	for _, w := range want {
		a := s.Artifact(w.seq)
		if a == nil {
			t.Fatalf("no artifact %d (of %d)", w.seq, s.Len())
		}
		if got := a.String(w.field); got != w.want {
			t.Errorf("artifact %d (%s %s) %s = %q; want %q", w.seq, a.Type, a.ID, w.field, got, w.want)
		}
	}
	checkProperties(t, log)
}

// An agent that exited finishes nothing: what it left open outside a turn
// (events after its turn ended, or a session that never had turns) must
// not go on saying it streams, runs or waits for an answer.
func TestAgentExitedClosesWhatNoTurnHolds(t *testing.T) {
	log := decodeLog(t,
		`{"type":"turn_started","turnId":"t1","source":"user"}`,
		`{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}`,
		`{"type":"text_delta","delta":"late"}`,
		`{"type":"tool_call_start","id":"c1","name":"shell"}`,
		`{"type":"permission_requested","id":"p1","title":"ok?","options":[{"id":"y","name":"Yes","kind":"allow_once"}]}`,
		`{"type":"agent_exited","code":1}`,
	)
	checkFields(t, log, []field{
		{2, "status", "interrupted"},
		{3, "status", "failed"},
		{4, "status", "cancelled"},
		{5, "code", "agent_exited"},
	})
}

// A block its agent never ended was cut short when the agent died: its
// text is what streamed until then, not a finished answer. The same death
// read "interrupted" when agentd died with the agent (a restarted agentd
// ends the turn interrupted) and "done" when agentd outlived it (it ends
// the turn with stopReason error, then posts agent_exited), so the rein
// CLI and the web view showed the cut text as complete.
func TestAgentDeathCutsTheBlockItStreamed(t *testing.T) {
	for _, c := range []struct {
		name string
		end  []string
	}{
		{"agentd ends the turn, then the exit", []string{
			`{"type":"turn_completed","turnId":"t1","stopReason":"error","error":"agent exited (code 3)"}`,
			`{"type":"agent_exited","code":3}`,
		}},
		{"the exit alone", []string{`{"type":"agent_exited","signal":"SIGKILL"}`}},
		{"the agent reports an error", []string{`{"type":"turn_completed","turnId":"t1","stopReason":"error","error":"overloaded"}`}},
		{"agentd died too", []string{`{"type":"turn_completed","turnId":"t1","stopReason":"interrupted"}`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			log := decodeLog(t, append([]string{
				`{"type":"turn_started","turnId":"t1","source":"user"}`,
				`{"type":"reasoning_delta","id":"r1","delta":"Let me"}`,
				`{"type":"text_delta","id":"m1","delta":"The fix is to"}`,
			}, c.end...)...)
			checkFields(t, log, []field{
				{2, "status", "interrupted"},
				{2, "text", "Let me"},
				{3, "status", "interrupted"},
				{3, "text", "The fix is to"},
			})
		})
	}
	// A turn the agent ended as it meant to closes what it left open as
	// done: agents that never send *_end rely on it.
	log := decodeLog(t,
		`{"type":"turn_started","turnId":"t1","source":"user"}`,
		`{"type":"text_delta","delta":"All done."}`,
		`{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}`,
	)
	checkFields(t, log, []field{{2, "status", "done"}})
}

// A notice is not the agent's: agentd posts one whenever its disk fills
// up or the agent writes a line it cannot read, in the middle of a text
// block as anywhere. The agent's block goes on, and its final text (an
// id-less text_end) is the whole block's: the text streamed before the
// notice must not be shown twice, once alone and once in the final text.
func TestNoticeMidTextKeepsOneBlock(t *testing.T) {
	log := decodeLog(t,
		`{"type":"turn_started","turnId":"t1","source":"user"}`,
		`{"type":"text_delta","delta":"Hello, "}`,
		`{"type":"notice","level":"warning","message":"agentd: no space left","code":"outbox_no_space"}`,
		`{"type":"text_delta","delta":"world"}`,
		`{"type":"text_end","text":"Hello, world"}`,
		`{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}`,
	)
	checkFields(t, log, []field{
		{2, "text", "Hello, world"},
		{2, "status", "done"},
		{3, "code", "outbox_no_space"},
	})
	if n := reducer.Fold(log).Len(); n != 3 {
		t.Fatalf("%d artifacts; want the turn, one text block and the notice", n)
	}
}

// A turn's end is final for what it closed. An agent (a native one, whose
// events agentd passes through as they come) may still report a tool of
// the turn running after the turn completed, cancelled by an abort: the
// tool must not go back to running in a turn that is over, where nothing
// would ever end it but the next turn's end, which would then call it
// failed. A final status the agent reports late is still taken: it says
// how the tool really ended.
func TestLateToolUpdateDoesNotReopenEndedTurn(t *testing.T) {
	log := decodeLog(t,
		`{"type":"turn_started","turnId":"t1","source":"user"}`,
		`{"type":"tool_call_start","id":"c1","name":"shell"}`,
		`{"type":"tool_call_start","id":"c2","name":"shell"}`,
		`{"type":"turn_completed","turnId":"t1","stopReason":"cancelled"}`,
		`{"type":"tool_call_update","id":"c1","status":"running","title":"go test"}`,
		`{"type":"tool_call_update","id":"c2","status":"pending"}`,
		`{"type":"tool_call_update","id":"c2","status":"completed"}`,
		`{"type":"turn_started","turnId":"t2","source":"user"}`,
		`{"type":"turn_completed","turnId":"t2","stopReason":"end_turn"}`,
	)
	checkFields(t, log, []field{
		{2, "status", "cancelled"},
		{2, "title", "go test"},
		{3, "status", "completed"},
		{4, "status", "completed"},
	})
}

// SkipTo: the next change's revision is above the one skipped to, and a
// skip below the state's revision changes nothing.
func TestSkipTo(t *testing.T) {
	s := reducer.New()
	s.Apply(protocol.Event{Type: protocol.EventTurnStarted, TurnID: "t1"})
	before := s.Rev()
	s.SkipTo(before - 1)
	if s.Rev() != before {
		t.Fatalf("SkipTo(%d) moved Rev from %d to %d", before-1, before, s.Rev())
	}
	s.SkipTo(40)
	changes := s.Apply(protocol.Event{Type: protocol.EventTextDelta, Delta: "hi"})
	if len(changes) == 0 || changes[0].Rev != 41 || s.Rev() < 41 {
		t.Fatalf("after SkipTo(40): changes %+v, Rev %d; want the first at 41", changes, s.Rev())
	}
}
