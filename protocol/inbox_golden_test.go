package protocol_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// goldenInbox are the wire values of the approvals inbox, turn history and
// event log export (inbox.go), under testdata/inbox/. e2e's
// TestSchemaGoldens validates them against the JSON Schema.
var goldenInbox = []struct {
	name  string
	value any
}{
	{"inbox/approval", protocol.Approval{SessionID: "sess-1", Project: ptr("web"), RequestID: "perm-3", Seq: 14, Title: "May I run rm -rf build?",
		TurnID: "t2", Tool: &protocol.ApprovalTool{ID: "tool-7", Name: "bash", Kind: "execute", Title: "rm -rf build"},
		Input:       raw(`{"cmd":"rm -rf build"}`),
		Options:     []protocol.PermissionOption{{ID: "allow", Name: "Allow", Kind: protocol.AllowOnce}, {ID: "deny", Name: "Deny", Kind: protocol.RejectOnce}},
		RequestedAt: 1732190001000, WaitingMs: 83000}},
	{"inbox/approval_answered", protocol.Approval{SessionID: "sess-1", Project: ptr("web"), RequestID: "perm-4", Seq: 21, Title: "May I push?",
		Options:     []protocol.PermissionOption{{ID: "allow", Name: "Allow", Kind: protocol.AllowOnce}, {ID: "deny", Name: "Deny", Kind: protocol.RejectOnce}},
		RequestedAt: 1732190001000, WaitingMs: 83000,
		Answer: &protocol.ApprovalAnswer{CommandID: 7, Outcome: protocol.OutcomeSelected, OptionID: "deny", OptionName: "Deny", OptionKind: "reject_once",
			AnsweredBy: "client", Auth: "token", AnsweredAt: 1732190080000}}},
	{"inbox/approval_dismissed", protocol.Approval{SessionID: "sess-2", RequestID: "perm-2", Title: "Allow?",
		Options: []protocol.PermissionOption{}, RequestedAt: 1732190001000,
		Answer: &protocol.ApprovalAnswer{CommandID: 3, Outcome: protocol.OutcomeCancelled, AnsweredBy: "anonymous", Auth: "none", AnsweredAt: 1732190002000}}},
	{"inbox/approval_minimal", protocol.Approval{SessionID: "sess-2", RequestID: "perm-1", Title: "Allow?",
		Options: []protocol.PermissionOption{}, RequestedAt: 1732190001000}},
	{"inbox/decision", protocol.Decision{SessionID: "sess-1", Project: ptr("web"), RequestID: "perm-3", Title: "May I run rm -rf build?", Tool: "bash",
		Status: "approved", OptionID: "allow", OptionName: "Allow", OptionKind: "allow_once", DecidedBy: "client", Auth: "token",
		RequestedAt: 1732190001000, AnsweredAt: 1732190084000, ResolvedAt: 1732190084050}},
	{"inbox/decision_agent", protocol.Decision{SessionID: "sess-2", RequestID: "perm-1", Title: "Allow?", Status: "cancelled",
		DecidedBy: "agent", RequestedAt: 1732190001000, ResolvedAt: 1732190002000}},
	{"inbox/approval_resolved", protocol.ApprovalResolved{SessionID: "sess-2", RequestID: "perm-1", Decision: protocol.Decision{
		SessionID: "sess-2", RequestID: "perm-1", Title: "Allow?", Status: "denied", OptionID: "deny", DecidedBy: "anonymous", Auth: "none",
		RequestedAt: 1732190001000, AnsweredAt: 1732190001500, ResolvedAt: 1732190002000}}},
	{"inbox/approvals_complete", protocol.ApprovalsComplete{Rev: 1764630000000123, Full: true}},
	{"inbox/turn_ended", protocol.Turn{ID: "t2", Seq: 9, Source: "user", PromptID: "p-2", Prompt: ptr("fix the test"), Status: "completed",
		StopReason: ptr("end_turn"), StartedAt: 1732190001000, EndedAt: ptr(int64(1732190060000)),
		Usage:     raw(`{"inputTokens":1200,"outputTokens":340}`),
		ToolCalls: []protocol.TurnToolCall{{ID: "tool-7", Name: "bash", Kind: "execute", Title: "go test ./...", Status: "completed"}},
		StartPos:  12, EndPos: ptr(int64(57)),
		Digest: ptr("5f0c2a6b1e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa99"), DigestRecorded: true}},
	{"inbox/turn_running", protocol.Turn{ID: "t3", Seq: 20, Status: "running", StartedAt: 1732190070000,
		ToolCalls: []protocol.TurnToolCall{}, StartPos: 58}},
	{"inbox/events_page", protocol.EventsPage{Events: []protocol.LoggedEvent{{Pos: 501, Instance: "agentd-7f3a", AgentSeq: 88,
		Event: raw(`{"type":"text_delta","delta":"hi","agentSeq":88,"receivedAt":1732190001234}`)}}, Next: ptr(int64(501))}},
	{"inbox/events_page_end", protocol.EventsPage{Events: []protocol.LoggedEvent{}}},
}

// TestGoldenInbox pins the inbox values' encoding: each golden decodes
// into its type and encodes back byte for byte.
func TestGoldenInbox(t *testing.T) {
	for _, tt := range goldenInbox {
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
