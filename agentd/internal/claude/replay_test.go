package claude_test

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rein-ai/rein/agentd/internal/claude"
	"github.com/rein-ai/rein/agentd/internal/notapplied"
	"github.com/rein-ai/rein/protocol"
)

// TestReplay feeds the transcripts recorded against the real CLI (see
// TestClaudeTurns, TestClaudeAbort, TestClaudeMatrix and -record) through
// the adapter and expects the very events those runs produced: the
// scenarios here, or testdata/<name>.events.jsonl.
func TestReplay(t *testing.T) {
	want := maps.Clone(scenarios)
	files, _ := filepath.Glob(filepath.Join("testdata", "*.events.jsonl"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want[strings.TrimSuffix(filepath.Base(f), ".events.jsonl")] = string(b)
	}
	if _, ok := want["matrix"]; !ok {
		t.Errorf("testdata/matrix.events.jsonl is missing (record it: make test-agent-claude RECORD=1)")
	}
	for name, want := range want {
		t.Run(name, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", name+".jsonl"))
			if err != nil {
				t.Fatalf("%v (record it: make test-agent-claude RECORD=1)", err)
			}
			defer f.Close()
			cwd, err := os.ReadFile(filepath.Join("testdata", name+".cwd"))
			if err != nil {
				t.Fatal(err)
			}
			evs, err := claude.Replay(f, string(cwd))
			if err != nil {
				t.Fatal(err)
			}
			if got := format(evs, string(cwd)); got != want {
				t.Errorf("replayed %s events:\n got:\n%s\nwant:\n%s", name, got, want)
			}
		})
	}
}

// A permission the user dismissed (outcome cancelled) is answered with a
// deny, and Claude Code reports the tool's result as an error: the tool
// did not fail, it never ran, so it ends cancelled, as the dismissed
// permission says (and as the ACP adapter ends it). The run is turn 5 of
// testdata/turns.jsonl, with the answer a dismissal instead of a reject.
func TestDismissedPermissionCancelsTheTool(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "turns.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var run []string
	for _, l := range lines[69:92] {
		switch {
		case strings.HasPrefix(l, `{"command":{"id":6,`):
			l = `{"command":{"id":6,"type":"permission_response","requestId":"turn-5:perm-1","outcome":"cancelled"}}`
		case strings.Contains(l, `"type":"tool_result"`):
			l = strings.Replace(l, "The user denied this tool use.", "The user dismissed the permission request.", 1)
		}
		run = append(run, l)
	}
	cwd, err := os.ReadFile(filepath.Join("testdata", "turns.cwd"))
	if err != nil {
		t.Fatal(err)
	}
	evs, err := claude.Replay(strings.NewReader(strings.Join(run, "\n")), string(cwd))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		switch ev.Type {
		case protocol.EventPermissionResolved, protocol.EventToolCallEnd, protocol.EventTurnCompleted:
			got = append(got, string(ev.Type)+" "+string(ev.Outcome)+string(ev.Status)+string(ev.StopReason))
		}
	}
	want := []string{"permission_resolved cancelled", "tool_call_end cancelled", "turn_completed end_turn"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// An aborted turn ends cancelled, and Claude Code says why it stopped in
// the error result that ends it (error_during_execution, its errors):
// that text is the agent's account of the turn's end and stays on it, as
// the Codex and ACP adapters keep theirs. The run is testdata/abort.jsonl,
// recorded against the real CLI.
func TestCancelledTurnKeepsClaudesError(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "abort.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cwd, err := os.ReadFile(filepath.Join("testdata", "abort.cwd"))
	if err != nil {
		t.Fatal(err)
	}
	evs, err := claude.Replay(f, string(cwd))
	if err != nil {
		t.Fatal(err)
	}
	var end *protocol.Event
	for i := range evs {
		if evs[i].Type == protocol.EventTurnCompleted && evs[i].TurnID == "turn-1" {
			end = &evs[i]
			break
		}
	}
	want := "[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=null"
	if end == nil {
		t.Fatalf("no turn_completed for turn-1:\n%s", format(evs, string(cwd)))
	}
	if end.StopReason != protocol.StopCancelled || end.Error != want {
		t.Errorf("aborted turn ended %s (error %q), want cancelled with error %q", end.StopReason, end.Error, want)
	}
}

// Claude Code withdraws a permission request (control_cancel_request)
// that the user answered at the same moment: the answer reaches the
// adapter after the request was resolved cancelled, and cannot take
// effect. It used to be logged only, so the user who answered read no
// word that their answer did nothing; now the transcript says so, with
// the notice agentd posts for every answer not applied. The run is turn
// 5 of testdata/turns.jsonl, with the CLI's cancel before the answer.
func TestAnswerToWithdrawnRequestIsTold(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "turns.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	run := append([]string(nil), lines[69:81]...)
	if !strings.Contains(run[len(run)-1], `"subtype":"can_use_tool"`) || !strings.HasPrefix(lines[81], `{"command":{"id":6,`) {
		t.Fatalf("testdata/turns.jsonl changed: line 81 is not the permission request, or 82 not its answer")
	}
	run = append(run, `{"stdout":{"type":"control_cancel_request","request_id":"ff17ce08-d575-475a-a410-fa7b48ca686f"}}`, lines[81])
	cwd, err := os.ReadFile(filepath.Join("testdata", "turns.cwd"))
	if err != nil {
		t.Fatal(err)
	}
	evs, err := claude.Replay(strings.NewReader(strings.Join(run, "\n")), string(cwd))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		switch ev.Type {
		case protocol.EventPermissionResolved:
			got = append(got, string(ev.Type)+" "+string(ev.Outcome))
		case protocol.EventNotice:
			got = append(got, string(ev.Type)+" "+string(ev.Level)+" "+ev.NoticeCode+": "+ev.Message)
		}
	}
	want := []string{
		"permission_resolved cancelled",
		`notice warning permission_answer_not_applied: agentd: the answer to permission request "turn-5:perm-1" (command 6) was not given to the agent: ` + notapplied.Ended,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
