package protocol

import "encoding/json"

// EventType names a ReinEvent.
type EventType string

// The ReinEvent types, see PROTOCOL.md "ReinEvents".
const (
	EventHeartbeat           EventType = "heartbeat"
	EventAgentStarted        EventType = "agent_started"
	EventAgentExited         EventType = "agent_exited"
	EventTurnStarted         EventType = "turn_started"
	EventUserMessage         EventType = "user_message"
	EventTextDelta           EventType = "text_delta"
	EventTextEnd             EventType = "text_end"
	EventReasoningDelta      EventType = "reasoning_delta"
	EventReasoningEnd        EventType = "reasoning_end"
	EventToolCallStart       EventType = "tool_call_start"
	EventToolInputDelta      EventType = "tool_input_delta"
	EventToolCallUpdate      EventType = "tool_call_update"
	EventToolOutputDelta     EventType = "tool_output_delta"
	EventToolCallEnd         EventType = "tool_call_end"
	EventPlanUpdated         EventType = "plan_updated"
	EventPermissionRequested EventType = "permission_requested"
	EventPermissionResolved  EventType = "permission_resolved"
	EventFileChanged         EventType = "file_changed"
	EventUsageUpdated        EventType = "usage_updated"
	EventSessionInfo         EventType = "session_info"
	EventNotice              EventType = "notice"
	EventTurnCompleted       EventType = "turn_completed"
)

// Source says who started a turn.
type Source string

// Turn sources.
const (
	SourceUser  Source = "user"
	SourceAgent Source = "agent"
)

// StopReason says why a turn ended.
type StopReason string

// Stop reasons.
const (
	StopEndTurn   StopReason = "end_turn"
	StopCancelled StopReason = "cancelled"
	StopMaxTokens StopReason = "max_tokens"
	StopMaxTurns  StopReason = "max_turns"
	StopRefusal   StopReason = "refusal"
	StopError     StopReason = "error"
	// StopInterrupted: the turn ended without the agent ending it (agentd
	// or its agent was killed mid-turn, and a restarted agentd closed it).
	StopInterrupted StopReason = "interrupted"
)

// ToolStatus is a tool call's status, both on events and on artifacts.
type ToolStatus string

// Tool statuses. AwaitingApproval is only ever set by the reducer.
const (
	ToolPending          ToolStatus = "pending"
	ToolAwaitingApproval ToolStatus = "awaiting_approval"
	ToolRunning          ToolStatus = "running"
	ToolCompleted        ToolStatus = "completed"
	ToolFailed           ToolStatus = "failed"
	ToolCancelled        ToolStatus = "cancelled"
	ToolDenied           ToolStatus = "denied"
)

// PlanStatus is one plan entry's status.
type PlanStatus string

// Plan entry statuses.
const (
	PlanPending    PlanStatus = "pending"
	PlanInProgress PlanStatus = "in_progress"
	PlanCompleted  PlanStatus = "completed"
)

// OptionKind classifies a permission option.
type OptionKind string

// Permission option kinds.
const (
	AllowOnce    OptionKind = "allow_once"
	AllowAlways  OptionKind = "allow_always"
	RejectOnce   OptionKind = "reject_once"
	RejectAlways OptionKind = "reject_always"
)

// IsAllow reports whether choosing an option of this kind approves.
func (k OptionKind) IsAllow() bool { return k == AllowOnce || k == AllowAlways }

// Outcome is how a permission request was resolved.
type Outcome string

// Permission outcomes.
const (
	OutcomeSelected  Outcome = "selected"
	OutcomeCancelled Outcome = "cancelled"
)

// ChangeKind is what happened to a file.
type ChangeKind string

// File change kinds.
const (
	ChangeAdd    ChangeKind = "add"
	ChangeUpdate ChangeKind = "update"
	ChangeDelete ChangeKind = "delete"
)

// NoticeLevel is a notice's severity.
type NoticeLevel string

// Notice levels.
const (
	LevelInfo    NoticeLevel = "info"
	LevelWarning NoticeLevel = "warning"
	LevelError   NoticeLevel = "error"
)

// AgentInfo describes the agent program in agent_started.
type AgentInfo struct {
	Name     string `json:"name"`
	Version  string `json:"version,omitempty"`
	Protocol string `json:"protocol"`
}

// PlanEntry is one line of a plan.
type PlanEntry struct {
	Content  string     `json:"content"`
	Status   PlanStatus `json:"status"`
	Priority string     `json:"priority,omitempty"`
}

// PermissionOption is one answer a permission request offers.
type PermissionOption struct {
	ID   string     `json:"id"`
	Name string     `json:"name"`
	Kind OptionKind `json:"kind"`
}

// Event is one ReinEvent. It is a flat struct: each type uses the fields the
// PROTOCOL.md table lists for it and leaves the rest zero. DecodeEvents
// guarantees that required fields are present and typed right.
//
// Two types put different things under the JSON name "code": agent_exited
// an exit code (number) and notice a string. They are ExitStatus and
// NoticeCode here, and MarshalJSON/UnmarshalJSON map them by type.
type Event struct {
	Type EventType `json:"type"`

	// Envelope, added by agentd. AgentSeq is 0 when absent.
	AgentSeq int64 `json:"agentSeq,omitempty"`
	Ts       int64 `json:"ts,omitempty"`
	// ReceivedAt is stamped by the server when it stores the event; the
	// reducer uses it for artifact times, so it never reads a clock.
	// Whatever a sender puts here is discarded by DecodeEvents.
	ReceivedAt int64 `json:"receivedAt,omitempty"`

	ID string `json:"id,omitempty"`

	// agent_started
	Agent        *AgentInfo      `json:"agent,omitempty"`
	Model        string          `json:"model,omitempty"`
	Cwd          string          `json:"cwd,omitempty"`
	Capabilities json.RawMessage `json:"capabilities,omitempty"`

	// agent_exited (Error is shared with tool_call_end and turn_completed)
	ExitStatus *int   `json:"-"`
	Signal     string `json:"signal,omitempty"`
	Error      string `json:"error,omitempty"`

	// turn_started, turn_completed, user_message
	TurnID     string     `json:"turnId,omitempty"`
	PromptID   string     `json:"promptId,omitempty"`
	Source     Source     `json:"source,omitempty"`
	StopReason StopReason `json:"stopReason,omitempty"`
	ResultText string     `json:"resultText,omitempty"`

	// text, reasoning, user_message
	Text     string `json:"text,omitempty"`
	Delta    string `json:"delta,omitempty"`
	Redacted bool   `json:"redacted,omitempty"`

	// tool calls
	Name      string          `json:"name,omitempty"`
	Kind      string          `json:"kind,omitempty"`
	Title     string          `json:"title,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	Status    ToolStatus      `json:"status,omitempty"`
	Locations json.RawMessage `json:"locations,omitempty"`
	Content   json.RawMessage `json:"content,omitempty"`
	Stream    string          `json:"stream,omitempty"`
	Output    string          `json:"output,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	ExitCode  *int            `json:"exitCode,omitempty"`

	// plan_updated
	Entries []PlanEntry `json:"entries,omitempty"`

	// permission_requested / permission_resolved, file_changed
	ToolCallID string             `json:"toolCallId,omitempty"`
	Options    []PermissionOption `json:"options,omitempty"`
	Outcome    Outcome            `json:"outcome,omitempty"`
	OptionID   string             `json:"optionId,omitempty"`
	Path       string             `json:"path,omitempty"`
	Change     ChangeKind         `json:"change,omitempty"`
	Diff       string             `json:"diff,omitempty"`

	// usage_updated
	InputTokens       *int64   `json:"inputTokens,omitempty"`
	OutputTokens      *int64   `json:"outputTokens,omitempty"`
	CachedInputTokens *int64   `json:"cachedInputTokens,omitempty"`
	CostUSD           *float64 `json:"costUsd,omitempty"`
	ContextUsed       *int64   `json:"contextUsed,omitempty"`
	ContextSize       *int64   `json:"contextSize,omitempty"`

	// session_info, notice
	Summary    string      `json:"summary,omitempty"`
	Level      NoticeLevel `json:"level,omitempty"`
	Message    string      `json:"message,omitempty"`
	NoticeCode string      `json:"-"`
}

// eventFields is Event without its methods, so the codec can reuse the
// struct tags without recursing.
type eventFields Event

// MarshalJSON writes the event, putting ExitStatus or NoticeCode under "code".
func (e Event) MarshalJSON() ([]byte, error) {
	w := struct {
		eventFields
		Code any `json:"code,omitempty"`
	}{eventFields: eventFields(e)}
	switch {
	case e.Type == EventAgentExited && e.ExitStatus != nil:
		w.Code = *e.ExitStatus
	case e.Type == EventNotice && e.NoticeCode != "":
		w.Code = e.NoticeCode
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	// DecodeEvents requires these fields even when empty, and omitempty
	// drops them: write them back so an event that decoded encodes to one
	// that decodes again (an empty delta or plan is legitimate).
	var missing []string
	switch e.Type {
	case EventUserMessage:
		missing = appendIf(missing, e.Text == "", `"text":""`)
	case EventTextDelta, EventReasoningDelta, EventToolInputDelta, EventToolOutputDelta:
		missing = appendIf(missing, e.Delta == "", `"delta":""`)
	case EventPlanUpdated:
		missing = appendIf(missing, len(e.Entries) == 0, `"entries":[]`)
	case EventPermissionRequested:
		missing = appendIf(missing, e.Title == "", `"title":""`)
		missing = appendIf(missing, len(e.Options) == 0, `"options":[]`)
	case EventNotice:
		missing = appendIf(missing, e.Message == "", `"message":""`)
	}
	for _, kv := range missing {
		// b is an object with at least "type": insert before its '}'.
		b = append(append(append(b[:len(b)-1], ','), kv...), '}')
	}
	return b, nil
}

func appendIf(list []string, cond bool, s string) []string {
	if cond {
		return append(list, s)
	}
	return list
}

// UnmarshalJSON reads an event without validating it; use DecodeEvents for
// anything that came over the wire.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w struct {
		eventFields
		Code json.RawMessage `json:"code,omitempty"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*e = Event(w.eventFields)
	if len(w.Code) > 0 && string(w.Code) != "null" {
		switch e.Type {
		case EventAgentExited:
			var n int
			if err := json.Unmarshal(w.Code, &n); err != nil {
				return err
			}
			e.ExitStatus = &n
		case EventNotice:
			if err := json.Unmarshal(w.Code, &e.NoticeCode); err != nil {
				return err
			}
		}
	}
	return nil
}

// EventsAccepted is the 202 body of POST /sessions/:id/events.
type EventsAccepted struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
}
