package protocol

import (
	"encoding/json"
	"fmt"
)

// ArtifactType names what an artifact shows.
type ArtifactType string

// Artifact types, see PROTOCOL.md "Artifacts".
const (
	ArtifactTurn          ArtifactType = "turn"
	ArtifactUserMessage   ArtifactType = "user_message"
	ArtifactAssistantText ArtifactType = "assistant_text"
	ArtifactReasoning     ArtifactType = "reasoning"
	ArtifactToolCall      ArtifactType = "tool_call"
	ArtifactPlan          ArtifactType = "plan"
	ArtifactPermission    ArtifactType = "permission"
	ArtifactFileChange    ArtifactType = "file_change"
	ArtifactNotice        ArtifactType = "notice"
)

// Artifact is one thing a client renders. On the wire it is a flat object:
// the fixed keys below plus the type's own fields (Fields), which are
// either set (any JSON value) or appended (strings).
//
// Field values are what encoding/json produces for the value (string,
// float64, bool, nil, []any, map[string]any) or a json.RawMessage; both
// marshal to the same bytes, which is what equality means for artifacts.
type Artifact struct {
	Seq       int64          `json:"seq"`
	ID        string         `json:"id"`
	Type      ArtifactType   `json:"type"`
	TurnID    string         `json:"turnId,omitempty"`
	CreatedAt int64          `json:"createdAt"`
	Rev       int64          `json:"rev"`
	Fields    map[string]any `json:"-"`
}

var fixedArtifactKeys = map[string]bool{"seq": true, "id": true, "type": true, "turnId": true, "createdAt": true, "rev": true}

// MarshalJSON flattens Fields beside the fixed keys: the bytes json.Marshal
// gives for one map of them all (keys sorted, HTML characters escaped).
func (a Artifact) MarshalJSON() ([]byte, error) { return a.MarshalJSONWith(nil) }

// UnmarshalJSON splits the fixed keys from the type's fields.
func (a *Artifact) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	var fixed struct {
		Seq       int64        `json:"seq"`
		ID        string       `json:"id"`
		Type      ArtifactType `json:"type"`
		TurnID    string       `json:"turnId"`
		CreatedAt int64        `json:"createdAt"`
		Rev       int64        `json:"rev"`
	}
	if err := json.Unmarshal(b, &fixed); err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	*a = Artifact{Seq: fixed.Seq, ID: fixed.ID, Type: fixed.Type, TurnID: fixed.TurnID, CreatedAt: fixed.CreatedAt, Rev: fixed.Rev, Fields: map[string]any{}}
	for k, v := range m {
		if !fixedArtifactKeys[k] {
			a.Fields[k] = v
		}
	}
	return nil
}

// String returns the field as a string, or "" when it is absent or not a string.
func (a *Artifact) String(field string) string {
	switch v := a.Fields[field].(type) {
	case string:
		return v
	case json.RawMessage:
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
	}
	return ""
}

// Clone returns a copy whose Fields map can be changed independently.
// Field values themselves are shared: they are treated as immutable.
func (a *Artifact) Clone() *Artifact {
	c := *a
	c.Fields = make(map[string]any, len(a.Fields))
	for k, v := range a.Fields {
		c.Fields[k] = v
	}
	return &c
}

// TurnStatus is a turn artifact's "status".
type TurnStatus string

// Turn statuses.
const (
	TurnRunning   TurnStatus = "running"
	TurnCompleted TurnStatus = "completed"
	TurnCancelled TurnStatus = "cancelled"
	TurnFailed    TurnStatus = "failed"
	// TurnInterrupted: the turn was cut off (its agent or agentd died, or a
	// new turn started) and nobody said how it ended; see StopInterrupted.
	TurnInterrupted TurnStatus = "interrupted"
)

// BlockStatus is the "status" of an assistant_text or reasoning artifact.
type BlockStatus string

// Text and reasoning block statuses.
const (
	BlockStreaming BlockStatus = "streaming"
	BlockDone      BlockStatus = "done"
	// BlockInterrupted: the turn was cancelled, interrupted or failed
	// (stop reason error; the agent exited) while the block still
	// streamed: its text was cut short. A turn the agent ended otherwise
	// closes its blocks done.
	BlockInterrupted BlockStatus = "interrupted"
)

// PermissionStatus is a permission artifact's "status".
type PermissionStatus string

// Permission statuses.
const (
	PermissionPending   PermissionStatus = "pending"
	PermissionApproved  PermissionStatus = "approved"
	PermissionDenied    PermissionStatus = "denied"
	PermissionCancelled PermissionStatus = "cancelled"
)

// The appendable artifact fields: streamed text that artifact_updated
// grows with "append" rather than replacing with "set".
const (
	FieldText      = "text"      // assistant_text, reasoning
	FieldInputText = "inputText" // tool_call: the streamed input
	FieldOutput    = "output"    // tool_call
)

// Appendable reports whether field of an artifact of type t is streamed
// text, which updates append to (and a store may append to rather than
// rewrite). Every other field is only ever set whole.
func Appendable(t ArtifactType, field string) bool {
	switch t {
	case ArtifactAssistantText, ArtifactReasoning:
		return field == FieldText
	case ArtifactToolCall:
		return field == FieldInputText || field == FieldOutput
	}
	return false
}
