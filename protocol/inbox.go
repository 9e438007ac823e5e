package protocol

import "encoding/json"

// The approvals inbox: GET /approvals, GET /approvals/stream and
// GET /approvals/history (see server/README.md).

// SSE event names of GET /approvals/stream.
const (
	SSEApprovalSnapshot = "approval_snapshot"
	SSEApprovalAdded    = "approval_added"
	SSEApprovalResolved = "approval_resolved"
	// SSEApprovalAnswered carries a pending request whose answer was
	// stored ({"approval":...} with its Answer): it still waits for its
	// agent to take the answer, but no longer for a person. A client that
	// does not know the event may skip it; its list then shows the
	// request as unanswered until approval_resolved.
	SSEApprovalAnswered = "approval_answered"
)

// Approval is one pending permission request, as GET /approvals lists it:
// waiting for an answer, or (Answer set) answered and waiting for its
// agent to take the answer.
type Approval struct {
	SessionID string  `json:"sessionId"`
	Project   *string `json:"project"`
	RequestID string  `json:"requestId"`
	// Seq is the seq of the request's permission artifact: which request
	// this is, where RequestID alone may later name another one (see
	// Command.RequestSeq). 0 (absent) from a server before it.
	Seq   int64  `json:"seq,omitempty"`
	Title string `json:"title"`
	// TurnID is the turn the request belongs to ("" when none).
	TurnID string `json:"turnId,omitempty"`
	// Tool is the tool call the request is about, when it names one.
	Tool    *ApprovalTool      `json:"tool,omitempty"`
	Input   json.RawMessage    `json:"input,omitempty"`
	Options []PermissionOption `json:"options"`
	// RequestedAt is when the server stored the request (ms since epoch).
	RequestedAt int64 `json:"requestedAt"`
	// WaitingMs is how long it has waited when the answer was made (lists
	// only; 0 on stream events, where clients count from RequestedAt).
	WaitingMs int64 `json:"waitingMs,omitempty"`
	// Answer is the permission_response stored for the request, nil while
	// none is. The request stays pending until its agent takes the answer
	// (approval_resolved), which may take a while (or wait for a sandbox
	// to connect again); a second answer is refused meanwhile.
	Answer *ApprovalAnswer `json:"answer,omitempty"`
}

// ApprovalAnswer is the answer stored for a pending request, as its
// Decision will name it once the agent takes it.
type ApprovalAnswer struct {
	// CommandID is the permission_response's command id.
	CommandID int64 `json:"commandId"`
	// Outcome is selected (OptionID names the option) or cancelled (a
	// dismissal: no option).
	Outcome    Outcome `json:"outcome"`
	OptionID   string  `json:"optionId,omitempty"`
	OptionName string  `json:"optionName,omitempty"`
	OptionKind string  `json:"optionKind,omitempty"`
	// AnsweredBy is who answered, as Decision.DecidedBy names a client:
	// "client" (token authentication) or "anonymous" (authentication
	// off); Auth is that mode, "token" or "none".
	AnsweredBy string `json:"answeredBy"`
	Auth       string `json:"auth"`
	// AnsweredAt is when the answer was stored (ms since epoch).
	AnsweredAt int64 `json:"answeredAt"`
}

// ApprovalTool is the tool call a permission request is about.
type ApprovalTool struct {
	ID    string `json:"id"`
	Name  string `json:"name,omitempty"`
	Kind  string `json:"kind,omitempty"`
	Title string `json:"title,omitempty"`
}

// Decision is one resolved permission request, as GET /approvals/history
// lists it.
type Decision struct {
	SessionID string  `json:"sessionId"`
	Project   *string `json:"project"`
	RequestID string  `json:"requestId"`
	Title     string  `json:"title"`
	Tool      string  `json:"tool,omitempty"`
	// Status is the permission artifact's final status: approved, denied
	// or cancelled (also when the session was removed while it waited).
	Status     string `json:"status"`
	OptionID   string `json:"optionId,omitempty"`
	OptionName string `json:"optionName,omitempty"`
	OptionKind string `json:"optionKind,omitempty"`
	// DecidedBy is who answered: the identity of the client that sent the
	// permission_response (see Options.APIToken: "client" under token
	// authentication, "anonymous" when authentication is off), or "agent"
	// when the request was resolved without an answer from a client (the
	// agent withdrew it, its turn ended, the session was removed).
	DecidedBy string `json:"decidedBy"`
	// Auth is the authentication mode the answer came under: "token" or
	// "none" ("" when DecidedBy is "agent").
	Auth        string `json:"auth,omitempty"`
	RequestedAt int64  `json:"requestedAt"`
	// AnsweredAt is when the client's answer was stored (0 when none).
	AnsweredAt int64 `json:"answeredAt,omitempty"`
	ResolvedAt int64 `json:"resolvedAt"`
}

// ApprovalResolved is the data of approval_resolved.
type ApprovalResolved struct {
	SessionID string   `json:"sessionId"`
	RequestID string   `json:"requestId"`
	Decision  Decision `json:"decision"`
}

// ApprovalsComplete is the data of snapshot_complete on the approvals
// stream: Rev is the approvals revision the client is at; Full says the
// events before it were a whole snapshot (replace the list) rather than
// the changes since the client's Last-Event-ID (apply them).
type ApprovalsComplete struct {
	Rev  int64 `json:"rev"`
	Full bool  `json:"full"`
}

// Turn is one turn of GET /sessions/:id/turns: the turn artifact's facts,
// its prompt and tool calls, where it sits in the stored event log, and
// the digest chained over that log up to its end (see server/README.md,
// "Turn digests").
type Turn struct {
	ID         string          `json:"id"`
	Seq        int64           `json:"seq"`
	Source     string          `json:"source,omitempty"`
	PromptID   string          `json:"promptId,omitempty"`
	Prompt     *string         `json:"prompt"`
	Status     string          `json:"status"`
	StopReason *string         `json:"stopReason"`
	Error      string          `json:"error,omitempty"`
	StartedAt  int64           `json:"startedAt"`
	EndedAt    *int64          `json:"endedAt"`
	Usage      json.RawMessage `json:"usage,omitempty"`
	ToolCalls  []TurnToolCall  `json:"toolCalls"`
	// StartPos and EndPos are the log positions of the events that
	// started and ended the turn (EndPos null while it runs).
	StartPos int64  `json:"startPos"`
	EndPos   *int64 `json:"endPos"`
	// Digest is the hex SHA-256 chain value after the event at EndPos
	// (null while the turn runs). DigestRecorded says it is the value the
	// server recorded when the turn ended; false means it was computed
	// from the log now (the turn ended before the server recorded digests,
	// or the store cannot record them), which proves nothing.
	Digest         *string `json:"digest"`
	DigestRecorded bool    `json:"digestRecorded"`
}

// TurnToolCall is one tool call of a turn.
type TurnToolCall struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Kind   string `json:"kind,omitempty"`
	Title  string `json:"title,omitempty"`
	Status string `json:"status,omitempty"`
}

// LoggedEvent is one entry of the stored event log, as GET
// /sessions/:id/events exports it: Event is the stored JSON byte for byte.
type LoggedEvent struct {
	Pos      int64           `json:"pos"`
	Instance string          `json:"instance"`
	AgentSeq int64           `json:"agentSeq"`
	Event    json.RawMessage `json:"event"`
}

// EventsPage is the body of GET /sessions/:id/events: the entries with
// pos > after, at most limit (fewer when their events pass 1 MiB
// together, one at least), in log order. Next is the after of the
// following page, null when this page reaches the end of the log.
type EventsPage struct {
	Events []LoggedEvent `json:"events"`
	Next   *int64        `json:"next"`
}
