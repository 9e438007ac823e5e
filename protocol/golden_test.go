package protocol_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func ptr[T any](v T) *T { return &v }

func raw(s string) json.RawMessage { return json.RawMessage(s) }

// canonical is the form of every golden file: two-space indented JSON and a
// trailing newline.
func canonical(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		tb.Fatalf("marshal %T: %v", v, err)
	}
	return append(b, '\n')
}

// golden compares got with testdata/<name>.json, or rewrites it under -update.
func golden(tb testing.TB, name string, got []byte) []byte {
	tb.Helper()
	path := filepath.Join("testdata", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("read golden (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		tb.Errorf("%s: encoding differs from golden\n got: %s\nwant: %s", path, got, want)
	}
	return want
}

// goldenEvents is one event of every type, every field of the type filled.
// ReceivedAt is filled too: the server stamps it and stores the event so.
var goldenEvents = []protocol.Event{
	{Type: protocol.EventHeartbeat, AgentSeq: 1, Ts: 1732190000000, ReceivedAt: 1732190000012},
	{
		Type: protocol.EventAgentStarted, AgentSeq: 2, Ts: 1732190000100, ReceivedAt: 1732190000110,
		Agent: &protocol.AgentInfo{Name: "claude-code", Version: "2.0.14", Protocol: "stream-json"},
		Model: "claude-sonnet-4-5", Cwd: "/workspace/rein",
		Capabilities: raw(`{"images":true,"loadSession":false}`),
	},
	{
		Type: protocol.EventAgentExited, AgentSeq: 3, Ts: 1732190000200, ReceivedAt: 1732190000210,
		ExitStatus: ptr(137), Signal: "SIGKILL", Error: "killed after the abort grace period",
	},
	{
		Type: protocol.EventTurnStarted, AgentSeq: 4, Ts: 1732190000300, ReceivedAt: 1732190000310,
		TurnID: "turn-1", PromptID: "cmd-7", Source: protocol.SourceUser,
	},
	{
		Type: protocol.EventUserMessage, AgentSeq: 5, Ts: 1732190000400, ReceivedAt: 1732190000410,
		ID: "msg-1", Text: "Fix the failing test in reducer/apply_test.go", PromptID: "cmd-7",
	},
	{
		Type: protocol.EventTextDelta, AgentSeq: 6, Ts: 1732190000500, ReceivedAt: 1732190000510,
		ID: "text-1", Delta: "Looking at the test, ",
	},
	{
		Type: protocol.EventTextEnd, AgentSeq: 7, Ts: 1732190000600, ReceivedAt: 1732190000610,
		ID: "text-1", Text: "Looking at the test, the fixture is stale.",
	},
	{
		Type: protocol.EventReasoningDelta, AgentSeq: 8, Ts: 1732190000700, ReceivedAt: 1732190000710,
		ID: "think-1", Delta: "The user wants ",
	},
	{
		Type: protocol.EventReasoningEnd, AgentSeq: 9, Ts: 1732190000800, ReceivedAt: 1732190000810,
		ID: "think-1", Text: "The user wants the test fixed.", Redacted: true,
	},
	{
		Type: protocol.EventToolCallStart, AgentSeq: 10, Ts: 1732190000900, ReceivedAt: 1732190000910,
		ID: "toolu_01", Name: "Bash", Kind: "execute", Title: "go test ./reducer",
		Input: raw(`{"command":"go test ./reducer"}`),
	},
	{
		Type: protocol.EventToolInputDelta, AgentSeq: 11, Ts: 1732190001000, ReceivedAt: 1732190001010,
		ID: "toolu_01", Delta: `{"command":"go te`,
	},
	{
		Type: protocol.EventToolCallUpdate, AgentSeq: 12, Ts: 1732190001100, ReceivedAt: 1732190001110,
		ID: "toolu_01", Status: protocol.ToolRunning, Title: "go test -run TestApply ./reducer",
		Kind: "execute", Name: "Bash", Input: raw(`{"command":"go test -run TestApply ./reducer"}`),
		Locations: raw(`[{"path":"/workspace/rein/reducer/apply_test.go","line":42}]`),
		Content:   raw(`[{"type":"text","text":"running"}]`),
	},
	{
		Type: protocol.EventToolOutputDelta, AgentSeq: 13, Ts: 1732190001200, ReceivedAt: 1732190001210,
		ID: "toolu_01", Delta: "--- FAIL: TestApply (0.00s)\n", Stream: "stderr",
	},
	{
		Type: protocol.EventToolCallEnd, AgentSeq: 14, Ts: 1732190001300, ReceivedAt: 1732190001310,
		ID: "toolu_01", Status: protocol.ToolFailed, Output: "FAIL\tgithub.com/rein-ai/rein/reducer\n",
		Result: raw(`{"stdout":"","stderr":"FAIL"}`), Error: "exit status 1", ExitCode: ptr(1),
	},
	{
		Type: protocol.EventPlanUpdated, AgentSeq: 15, Ts: 1732190001400, ReceivedAt: 1732190001410,
		ID: "plan-1", Entries: []protocol.PlanEntry{
			{Content: "Reproduce the failure", Status: protocol.PlanCompleted, Priority: "high"},
			{Content: "Update the fixture", Status: protocol.PlanInProgress, Priority: "medium"},
			{Content: "Run the whole suite", Status: protocol.PlanPending, Priority: "low"},
		},
	},
	{
		Type: protocol.EventPermissionRequested, AgentSeq: 16, Ts: 1732190001500, ReceivedAt: 1732190001510,
		ID: "perm-1", ToolCallID: "toolu_02", Title: "Allow editing reducer/testdata/fold.json?",
		Input: raw(`{"file_path":"reducer/testdata/fold.json"}`),
		Options: []protocol.PermissionOption{
			{ID: "allow_once", Name: "Allow", Kind: protocol.AllowOnce},
			{ID: "allow_always", Name: "Always allow", Kind: protocol.AllowAlways},
			{ID: "reject_once", Name: "Reject", Kind: protocol.RejectOnce},
			{ID: "reject_always", Name: "Never allow", Kind: protocol.RejectAlways},
		},
	},
	{
		Type: protocol.EventPermissionResolved, AgentSeq: 17, Ts: 1732190001600, ReceivedAt: 1732190001610,
		ID: "perm-1", Outcome: protocol.OutcomeSelected, OptionID: "allow_once",
	},
	{
		Type: protocol.EventFileChanged, AgentSeq: 18, Ts: 1732190001700, ReceivedAt: 1732190001710,
		Path: "reducer/testdata/fold.json", Change: protocol.ChangeUpdate,
		Diff: "@@ -1 +1 @@\n-{\"seq\":1}\n+{\"seq\":2}\n", ToolCallID: "toolu_02",
	},
	{
		Type: protocol.EventUsageUpdated, AgentSeq: 19, Ts: 1732190001800, ReceivedAt: 1732190001810,
		InputTokens: ptr(int64(12034)), OutputTokens: ptr(int64(845)), CachedInputTokens: ptr(int64(11000)),
		CostUSD: ptr(0.0421), ContextUsed: ptr(int64(23879)), ContextSize: ptr(int64(200000)),
	},
	{
		Type: protocol.EventSessionInfo, AgentSeq: 20, Ts: 1732190001900, ReceivedAt: 1732190001910,
		Title: "Fix reducer test", Summary: "Fix the stale fixture in the reducer test",
	},
	{
		Type: protocol.EventNotice, AgentSeq: 21, Ts: 1732190002000, ReceivedAt: 1732190002010,
		Level: protocol.LevelWarning, Message: "Context window is 90% full", NoticeCode: "context_high",
	},
	{
		Type: protocol.EventTurnCompleted, AgentSeq: 22, Ts: 1732190002100, ReceivedAt: 1732190002110,
		TurnID: "turn-1", StopReason: protocol.StopError, Error: "tool call failed",
		ResultText: "I could not make the test pass.",
	},
}

var goldenCommands = []struct {
	name string
	cmd  protocol.Command
}{
	{"prompt", protocol.Command{ID: 1, Type: protocol.CommandPrompt, Text: "fix the bug"}},
	{"abort", protocol.Command{ID: 2, Type: protocol.CommandAbort}},
	{"permission_response_option", protocol.Command{ID: 3, Type: protocol.CommandPermissionResponse, RequestID: "perm-1", OptionID: "allow_once", Outcome: protocol.OutcomeSelected}},
	{"permission_response_seq", protocol.Command{ID: 5, Type: protocol.CommandPermissionResponse, RequestID: "perm-1", OptionID: "allow_once", Outcome: protocol.OutcomeSelected, RequestSeq: 7}},
	{"permission_response_streamed", protocol.Command{ID: 6, Type: protocol.CommandPermissionResponse, RequestID: "perm-1", OptionID: "allow_once", Outcome: protocol.OutcomeSelected, RequestSeq: 7, RequestInstance: "agentd-5f0c2e7a91d4b3c8a6e1f209", RequestAgentSeq: 42}},
	{"permission_response_cancelled", protocol.Command{ID: 4, Type: protocol.CommandPermissionResponse, RequestID: "perm-1", Outcome: protocol.OutcomeCancelled}},
	{"shutdown", protocol.Command{Type: protocol.CommandShutdown}},
}

func artifact(seq int64, id string, typ protocol.ArtifactType, turnID string, rev int64, fields map[string]any) *protocol.Artifact {
	return &protocol.Artifact{Seq: seq, ID: id, Type: typ, TurnID: turnID, CreatedAt: 1732190000300 + seq*100, Rev: rev, Fields: fields}
}

// goldenArtifacts is one artifact of every type with the fields of
// PROTOCOL.md's artifact table.
var goldenArtifacts = []*protocol.Artifact{
	artifact(1, "turn-1", protocol.ArtifactTurn, "turn-1", 30, map[string]any{
		"status": "failed", "source": "user", "stopReason": "error", "error": "tool call failed",
		"usage":      map[string]any{"inputTokens": 12034, "outputTokens": 845, "costUsd": 0.0421},
		"resultText": "I could not make the test pass.", "startedAt": 1732190000310, "endedAt": 1732190002110,
	}),
	artifact(2, "msg-1", protocol.ArtifactUserMessage, "turn-1", 2, map[string]any{
		"text": "Fix the failing test in reducer/apply_test.go", "promptId": "cmd-7",
	}),
	artifact(3, "text-1", protocol.ArtifactAssistantText, "turn-1", 7, map[string]any{
		"text": "Looking at the test, the fixture is stale.", "status": "done",
	}),
	artifact(4, "think-1", protocol.ArtifactReasoning, "turn-1", 9, map[string]any{
		"text": "", "status": "done", "redacted": true,
	}),
	artifact(5, "toolu_01", protocol.ArtifactToolCall, "turn-1", 14, map[string]any{
		"inputText": `{"command":"go test -run TestApply ./reducer"}`, "output": "--- FAIL: TestApply (0.00s)\n",
		"name": "Bash", "kind": "execute", "title": "go test -run TestApply ./reducer", "status": "failed",
		"input":     map[string]any{"command": "go test -run TestApply ./reducer"},
		"locations": []any{map[string]any{"path": "/workspace/rein/reducer/apply_test.go", "line": 42}},
		"content":   []any{map[string]any{"type": "text", "text": "running"}},
		"result":    map[string]any{"stdout": "", "stderr": "FAIL"}, "error": "exit status 1", "exitCode": 1,
	}),
	artifact(6, "plan-1", protocol.ArtifactPlan, "turn-1", 15, map[string]any{
		"entries": []any{
			map[string]any{"content": "Reproduce the failure", "status": "completed", "priority": "high"},
			map[string]any{"content": "Update the fixture", "status": "in_progress"},
		},
	}),
	artifact(7, "perm-1", protocol.ArtifactPermission, "turn-1", 17, map[string]any{
		"toolCallId": "toolu_02", "title": "Allow editing reducer/testdata/fold.json?",
		"input":   map[string]any{"file_path": "reducer/testdata/fold.json"},
		"options": []any{map[string]any{"id": "allow_once", "name": "Allow", "kind": "allow_once"}, map[string]any{"id": "reject_once", "name": "Reject", "kind": "reject_once"}},
		"status":  "approved", "optionId": "allow_once",
	}),
	artifact(8, "file-1", protocol.ArtifactFileChange, "turn-1", 18, map[string]any{
		"path": "reducer/testdata/fold.json", "change": "update", "diff": "@@ -1 +1 @@\n-a\n+b\n", "toolCallId": "toolu_02",
	}),
	// A notice outside any turn: turnId is omitted.
	artifact(9, "notice-1", protocol.ArtifactNotice, "", 21, map[string]any{
		"level": "warning", "message": "Context window is 90% full", "code": "context_high",
	}),
}

var sessionRecord = protocol.Session{
	ID: "sess-1", Status: protocol.StatusIdle, Summary: ptr("Fix the failing test"),
	Project: ptr("rein"), CreatedAt: 1732190000000, LastHeartbeat: ptr(int64(1732190005000)),
}

// goldenValues are the other wire values; decode builds an empty value of
// the same type to decode the golden into.
var goldenValues = []struct {
	name  string
	value any
}{
	{"session/with_nulls", protocol.Session{ID: "sess-0", Status: protocol.StatusBootstrapping, CreatedAt: 1732190000000}},
	{"session/with_values", sessionRecord},
	{"session/create_request", protocol.CreateSessionRequest{Project: ptr("rein")}},
	{"stream/artifact_payload", protocol.ArtifactPayload{Artifact: goldenArtifacts[4]}},
	{"stream/artifact_update_append", protocol.ArtifactUpdate{Seq: 3, Field: "text", Append: ptr("the fixture is stale.")}},
	{"stream/artifact_update_set", protocol.ArtifactUpdate{Seq: 5, Field: "status", Set: raw(`"failed"`)}},
	{"stream/artifact_update_set_object", protocol.ArtifactUpdate{Seq: 1, Field: "usage", Set: raw(`{"inputTokens":12034,"outputTokens":845}`)}},
	{"stream/snapshot_complete", protocol.SnapshotComplete{Rev: 30}},
	{"stream/session_payload", protocol.SessionPayload{Session: sessionRecord}},
	{"stream/session_updated", protocol.SessionUpdated{ID: "sess-1", Fields: protocol.SessionFields{Status: ptr(protocol.StatusLive), Summary: ptr("Fix the failing test")}}},
	{"stream/session_updated_status", protocol.SessionUpdated{ID: "sess-1", Fields: protocol.SessionFields{Status: ptr(protocol.StatusDisconnected)}}},
	{"stream/session_removed", protocol.SessionRemoved{ID: "sess-1"}},
	{"stream/events_accepted", protocol.EventsAccepted{Accepted: 3, Duplicates: 1}},
	{"stream/command_accepted", protocol.CommandAccepted{ID: 42}},
	{"stream/error_body", protocol.ErrorBody{Code: protocol.CodeNotFound, Message: `session "x" not found`}},
}

func TestGoldenEvents(t *testing.T) {
	seen := map[protocol.EventType]bool{}
	for _, ev := range goldenEvents {
		t.Run(string(ev.Type), func(t *testing.T) {
			seen[ev.Type] = true
			want := golden(t, "events/"+string(ev.Type), canonical(t, ev))

			// Decode the golden and encode it again: byte-identical.
			var got protocol.Event
			if err := json.Unmarshal(want, &got); err != nil {
				t.Fatalf("unmarshal golden: %v", err)
			}
			// RawMessage fields keep the golden's indentation: compare compact.
			if g, w := compact(t, got), compact(t, ev); g != w {
				t.Errorf("decoded golden\n got: %s\nwant: %s", g, w)
			}
			if b := canonical(t, got); !bytes.Equal(b, want) {
				t.Errorf("re-encoded golden differs\n got: %s\nwant: %s", b, want)
			}

			// The golden is valid on the wire; only receivedAt is dropped.
			evs, err := protocol.DecodeEvents(want)
			if err != nil {
				t.Fatalf("DecodeEvents(golden): %v", err)
			}
			wantEv := ev
			wantEv.ReceivedAt = 0
			if len(evs) != 1 || !reflect.DeepEqual(evs[0], wantEv) {
				t.Errorf("DecodeEvents(golden)\n got: %+v\nwant: %+v", evs, wantEv)
			}

			// Every field of the type is in the golden, and nothing else.
			var m map[string]json.RawMessage
			if err := json.Unmarshal(want, &m); err != nil {
				t.Fatal(err)
			}
			spec, ok := specByType[ev.Type]
			if !ok {
				t.Fatalf("no spec for %s", ev.Type)
			}
			wantKeys := []string{"type", "agentSeq", "ts", "receivedAt"}
			for _, f := range append(slices.Clone(spec.required), spec.optional...) {
				wantKeys = append(wantKeys, f.name)
			}
			if got, want := sortedKeys(m), sorted(wantKeys); !slices.Equal(got, want) {
				t.Errorf("golden keys\n got: %v\nwant: %v", got, want)
			}
		})
	}
	for _, s := range eventSpecs {
		if !seen[s.typ] {
			t.Errorf("no golden for event type %s", s.typ)
		}
	}
}

// TestEventCode checks that "code" carries an exit status for agent_exited
// and a string for notice, and nothing for other types.
func TestEventCode(t *testing.T) {
	tests := []struct {
		name string
		ev   protocol.Event
		want string
	}{
		{"exit status", protocol.Event{Type: protocol.EventAgentExited, ExitStatus: ptr(2)}, `{"type":"agent_exited","code":2}`},
		{"exit status zero", protocol.Event{Type: protocol.EventAgentExited, ExitStatus: ptr(0)}, `{"type":"agent_exited","code":0}`},
		{"no exit status", protocol.Event{Type: protocol.EventAgentExited, Signal: "SIGTERM"}, `{"type":"agent_exited","signal":"SIGTERM"}`},
		{"notice code", protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelInfo, Message: "m", NoticeCode: "rate_limited"}, `{"type":"notice","level":"info","message":"m","code":"rate_limited"}`},
		{"notice code on other type", protocol.Event{Type: protocol.EventHeartbeat, NoticeCode: "x", ExitStatus: ptr(1)}, `{"type":"heartbeat"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("Marshal = %s, want %s", b, tt.want)
			}
			evs, err := protocol.DecodeEvents(b)
			if err != nil {
				t.Fatalf("DecodeEvents(%s): %v", b, err)
			}
			want := tt.ev
			if want.Type != protocol.EventAgentExited {
				want.ExitStatus = nil
			}
			if want.Type != protocol.EventNotice {
				want.NoticeCode = ""
			}
			if !reflect.DeepEqual(evs[0], want) {
				t.Errorf("DecodeEvents(%s) = %+v, want %+v", b, evs[0], want)
			}
		})
	}
}

// TestEventRequiredEmptyFields: a required field that may be empty is
// still written, or the server would refuse what agentd encoded.
func TestEventRequiredEmptyFields(t *testing.T) {
	tests := []struct {
		ev   protocol.Event
		want string
	}{
		{protocol.Event{Type: protocol.EventUserMessage}, `{"type":"user_message","text":""}`},
		{protocol.Event{Type: protocol.EventTextDelta}, `{"type":"text_delta","delta":""}`},
		{protocol.Event{Type: protocol.EventReasoningDelta, ID: "r"}, `{"type":"reasoning_delta","id":"r","delta":""}`},
		{protocol.Event{Type: protocol.EventToolInputDelta, ID: "t"}, `{"type":"tool_input_delta","id":"t","delta":""}`},
		{protocol.Event{Type: protocol.EventToolOutputDelta, ID: "t", Stream: "stdout"}, `{"type":"tool_output_delta","id":"t","stream":"stdout","delta":""}`},
		{protocol.Event{Type: protocol.EventPlanUpdated}, `{"type":"plan_updated","entries":[]}`},
		{protocol.Event{Type: protocol.EventPermissionRequested, ID: "p"}, `{"type":"permission_requested","id":"p","title":"","options":[]}`},
		{protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelError}, `{"type":"notice","level":"error","message":""}`},
		// Optional fields stay omitted when empty.
		{protocol.Event{Type: protocol.EventTextEnd}, `{"type":"text_end"}`},
	}
	for _, tt := range tests {
		t.Run(string(tt.ev.Type), func(t *testing.T) {
			b, err := json.Marshal(tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("Marshal = %s, want %s", b, tt.want)
			}
			if _, err := protocol.DecodeEvents(b); err != nil {
				t.Errorf("DecodeEvents(Marshal(ev)): %v", err)
			}
		})
	}
}

func TestGoldenCommands(t *testing.T) {
	for _, tt := range goldenCommands {
		t.Run(tt.name, func(t *testing.T) {
			want := golden(t, "commands/"+tt.name, canonical(t, tt.cmd))
			var got protocol.Command
			if err := json.Unmarshal(want, &got); err != nil {
				t.Fatal(err)
			}
			if got != tt.cmd {
				t.Errorf("decoded golden = %+v, want %+v", got, tt.cmd)
			}
			if b := canonical(t, got); !bytes.Equal(b, want) {
				t.Errorf("re-encoded golden differs\n got: %s\nwant: %s", b, want)
			}
			// What a client sends decodes to the command minus the id
			// and the fields only the server sets; shutdown is agentd's
			// alone.
			c, err := protocol.DecodeCommand(want)
			if tt.cmd.Type == protocol.CommandShutdown {
				if err == nil {
					t.Errorf("DecodeCommand(shutdown) = %+v, want an error", c)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeCommand(golden): %v", err)
			}
			wantCmd := tt.cmd
			wantCmd.ID, wantCmd.RequestInstance, wantCmd.RequestAgentSeq = 0, "", 0
			if c != wantCmd {
				t.Errorf("DecodeCommand(golden) = %+v, want %+v", c, wantCmd)
			}
		})
	}
}

func TestGoldenArtifacts(t *testing.T) {
	seen := map[protocol.ArtifactType]bool{}
	for _, a := range goldenArtifacts {
		t.Run(string(a.Type), func(t *testing.T) {
			seen[a.Type] = true
			want := golden(t, "artifacts/"+string(a.Type), canonical(t, a))
			var got protocol.Artifact
			if err := json.Unmarshal(want, &got); err != nil {
				t.Fatal(err)
			}
			if b := canonical(t, &got); !bytes.Equal(b, want) {
				t.Errorf("re-encoded golden differs\n got: %s\nwant: %s", b, want)
			}
			if got.Seq != a.Seq || got.ID != a.ID || got.Type != a.Type || got.TurnID != a.TurnID || got.CreatedAt != a.CreatedAt || got.Rev != a.Rev {
				t.Errorf("fixed keys = %+v, want %+v", got, a)
			}
			if g, w := sortedKeys(got.Fields), sortedKeys(a.Fields); !slices.Equal(g, w) {
				t.Errorf("field names = %v, want %v", g, w)
			}
		})
	}
	all := []protocol.ArtifactType{
		protocol.ArtifactTurn, protocol.ArtifactUserMessage, protocol.ArtifactAssistantText,
		protocol.ArtifactReasoning, protocol.ArtifactToolCall, protocol.ArtifactPlan,
		protocol.ArtifactPermission, protocol.ArtifactFileChange, protocol.ArtifactNotice,
	}
	for _, typ := range all {
		if !seen[typ] {
			t.Errorf("no golden for artifact type %s", typ)
		}
	}
}

func TestGoldenValues(t *testing.T) {
	for _, tt := range goldenValues {
		t.Run(tt.name, func(t *testing.T) {
			want := golden(t, tt.name, canonical(t, tt.value))
			p := reflect.New(reflect.TypeOf(tt.value))
			if err := json.Unmarshal(want, p.Interface()); err != nil {
				t.Fatal(err)
			}
			if b := canonical(t, p.Interface()); !bytes.Equal(b, want) {
				t.Errorf("re-encoded golden differs\n got: %s\nwant: %s", b, want)
			}
		})
	}
}

// TestSessionNulls pins the reference's nulls: summary, project and
// lastHeartbeat are present as null, never omitted.
func TestSessionNulls(t *testing.T) {
	b, err := json.Marshal(protocol.Session{ID: "s", Status: protocol.StatusLive, CreatedAt: 5})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"s","status":"live","summary":null,"project":null,"createdAt":5,"lastHeartbeat":null,"pendingApprovals":0}`
	if string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
}

func compact(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}
