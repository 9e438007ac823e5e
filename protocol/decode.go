package protocol

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// FieldError says which event (or command) and which field was refused, and
// why. It unwraps to an *Error with CodeInvalid (or CodeTooLarge).
type FieldError struct {
	// Index is the position in a batch; -1 for a command or a lone object
	// whose position does not matter.
	Index  int
	Field  string
	Reason string
	code   Code
}

func (e *FieldError) Error() string {
	where := e.Field
	if e.Index >= 0 {
		where = fmt.Sprintf("events[%d]", e.Index)
		if e.Field != "" {
			where += "." + e.Field
		}
	}
	if where == "" {
		return e.Reason
	}
	return where + ": " + e.Reason
}

// Unwrap lets CodeOf and errors.Is see the wire code.
func (e *FieldError) Unwrap() error {
	c := e.code
	if c == "" {
		c = CodeInvalid
	}
	return &Error{Code: c, Message: e.Error()}
}

// kind is the JSON type a field must have.
type kind int

const (
	kString kind = iota // any string up to MaxTextLen bytes
	kID                 // an event-side id: 1..MaxIDLen of [A-Za-z0-9._:-]
	kInt                // an integer number
	kNumber             // any number
	kBool
	kObject
	kArray
	kAny // any JSON value
)

type field struct {
	name     string
	kind     kind
	required bool
	enum     []string // allowed values of a string
	// nonEmpty refuses "" for a required string.
	nonEmpty bool
	// cuttable: a sender may cut the array to maxItems rather than have
	// the event refused (DecodeEventUnlimited leaves maxItems unchecked).
	cuttable bool
	// elem validates each element of an array or an object's fields.
	elem []field
	// maxItems bounds arrays.
	maxItems int
}

func req(name string, k kind) field { return field{name: name, kind: k, required: true} }
func opt(name string, k kind) field { return field{name: name, kind: k} }
func enumf(name string, required bool, values ...string) field {
	return field{name: name, kind: kString, required: required, enum: values}
}

var (
	toolEndStatuses    = []string{string(ToolCompleted), string(ToolFailed), string(ToolCancelled), string(ToolDenied)}
	toolUpdateStatuses = []string{string(ToolPending), string(ToolRunning), string(ToolCompleted), string(ToolFailed), string(ToolCancelled), string(ToolDenied)}
	stopReasons        = []string{string(StopEndTurn), string(StopCancelled), string(StopMaxTokens), string(StopMaxTurns), string(StopRefusal), string(StopError), string(StopInterrupted)}
	planStatuses       = []string{string(PlanPending), string(PlanInProgress), string(PlanCompleted)}
	optionKinds        = []string{string(AllowOnce), string(AllowAlways), string(RejectOnce), string(RejectAlways)}
)

// envelope fields every event may carry.
var envelope = []field{opt("agentSeq", kInt), opt("ts", kInt), opt("receivedAt", kInt)}

// eventSchemas is PROTOCOL.md's ReinEvent table. Fields not listed are
// ignored, so a newer agentd can send more than an older server knows.
var eventSchemas = map[EventType][]field{
	EventHeartbeat: nil,
	EventAgentStarted: {
		{name: "agent", kind: kObject, required: true, elem: []field{
			{name: "name", kind: kString, required: true, nonEmpty: true}, opt("version", kString),
			{name: "protocol", kind: kString, required: true, nonEmpty: true},
		}},
		opt("model", kString), opt("cwd", kString), opt("capabilities", kAny),
	},
	EventAgentExited:    {opt("code", kInt), opt("signal", kString), opt("error", kString)},
	EventTurnStarted:    {req("turnId", kID), opt("promptId", kID), enumf("source", true, string(SourceUser), string(SourceAgent))},
	EventUserMessage:    {opt("id", kID), req("text", kString), opt("promptId", kID)},
	EventTextDelta:      {opt("id", kID), req("delta", kString)},
	EventTextEnd:        {opt("id", kID), opt("text", kString)},
	EventReasoningDelta: {opt("id", kID), req("delta", kString)},
	EventReasoningEnd:   {opt("id", kID), opt("text", kString), opt("redacted", kBool)},
	EventToolCallStart: {
		req("id", kID), {name: "name", kind: kString, required: true, nonEmpty: true},
		opt("kind", kString), opt("title", kString), opt("input", kAny),
	},
	EventToolInputDelta: {req("id", kID), req("delta", kString)},
	EventToolCallUpdate: {
		req("id", kID), enumf("status", false, toolUpdateStatuses...), opt("title", kString), opt("kind", kString),
		opt("name", kString), opt("input", kAny), opt("locations", kArray), opt("content", kAny),
	},
	EventToolOutputDelta: {req("id", kID), req("delta", kString), enumf("stream", false, "stdout", "stderr")},
	EventToolCallEnd: {
		req("id", kID), enumf("status", true, toolEndStatuses...), opt("output", kString),
		opt("result", kAny), opt("error", kString), opt("exitCode", kInt),
	},
	EventPlanUpdated: {
		opt("id", kID),
		{name: "entries", kind: kArray, required: true, maxItems: MaxPlanEntries, cuttable: true, elem: []field{
			req("content", kString), enumf("status", true, planStatuses...), opt("priority", kString),
		}},
	},
	EventPermissionRequested: {
		req("id", kID), opt("toolCallId", kID), req("title", kString), opt("input", kAny),
		{name: "options", kind: kArray, required: true, maxItems: MaxPermissionOptions, elem: []field{
			req("id", kID), req("name", kString), enumf("kind", true, optionKinds...),
		}},
	},
	EventPermissionResolved: {
		req("id", kID), enumf("outcome", true, string(OutcomeSelected), string(OutcomeCancelled)), opt("optionId", kID),
	},
	EventFileChanged: {
		{name: "path", kind: kString, required: true, nonEmpty: true},
		enumf("change", true, string(ChangeAdd), string(ChangeUpdate), string(ChangeDelete)),
		opt("diff", kString), opt("toolCallId", kID),
	},
	EventUsageUpdated: {
		opt("inputTokens", kInt), opt("outputTokens", kInt), opt("cachedInputTokens", kInt),
		opt("costUsd", kNumber), opt("contextUsed", kInt), opt("contextSize", kInt),
	},
	EventSessionInfo: {opt("title", kString), opt("summary", kString)},
	EventNotice: {
		enumf("level", true, string(LevelInfo), string(LevelWarning), string(LevelError)),
		req("message", kString), opt("code", kString),
	},
	EventTurnCompleted: {
		opt("turnId", kID), enumf("stopReason", true, stopReasons...), opt("error", kString), opt("resultText", kString),
	},
}

// KnownEventType reports whether t is a ReinEvent type this version knows.
func KnownEventType(t EventType) bool {
	_, ok := eventSchemas[t]
	return ok
}

// DecodeEvents decodes and validates a POST /sessions/:id/events body: one
// event object or a JSON array of them. The error, a *FieldError, names the
// event index and the field. ReceivedAt is cleared: only the server sets it.
func DecodeEvents(body []byte) ([]Event, error) {
	events, _, err := decode(body, false, false)
	return events, err
}

// DecodeEventUnlimited decodes and validates one event object as
// DecodeEvents does, but leaves unchecked the limits a sender can meet by
// cutting the event: its size (MaxEventBytes), the length of each text
// (MaxTextLen) and a plan's entries (MaxPlanEntries). agentd reads an
// agent's line with it and then cuts the event to those limits, as it cuts
// the events of the agents it does not read as ReinEvents: refused
// instead, the event would be lost whole, a turn's or a tool's end with
// it. Everything else (the type, required fields, ids, enums, the JSON
// kinds) is checked as DecodeEvents checks it.
func DecodeEventUnlimited(body []byte) (Event, error) {
	if i := skipSpace(body, 0); i < len(body) && body[i] == '[' {
		return Event{}, &FieldError{Index: 0, Reason: "not a JSON object: found an array"}
	}
	events, _, err := decode(body, false, true)
	if err != nil {
		return Event{}, err
	}
	return events[0], nil
}

// DecodeEventsRaw is DecodeEvents that also returns, per event, its bytes
// in body when the event is exactly what they decode to (with json.Unmarshal)
// and they carry no receivedAt; nil otherwise. A store can then keep those
// bytes, with receivedAt added as the last key, instead of encoding the
// event again. The bytes alias body.
func DecodeEventsRaw(body []byte) ([]Event, [][]byte, error) {
	return decode(body, true, false)
}

// validateEventID checks an event-side id: block, tool call, request, turn
// and prompt ids. They allow ':' beyond the session id charset so adapters
// can namespace an agent's ids (for example by turn).
func validateEventID(id string) error {
	if id == "" {
		return idError("must not be empty")
	}
	if len(id) > MaxIDLen {
		return idError("longer than 128 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == ':') {
			return idError("may contain only letters, digits, '.', '_', ':' and '-' (found " + quoteByte(c) + ")")
		}
	}
	return nil
}

// ValidEventID reports whether id may name a block, tool call or request.
func ValidEventID(id string) bool { return validateEventID(id) == nil }

// commandSchemas lists what clients may send; shutdown is agentd's alone.
var commandSchemas = map[CommandType][]field{
	CommandPrompt:             {{name: "text", kind: kString, required: true, nonEmpty: true}, opt("queue", kBool)},
	CommandAbort:              nil,
	CommandPermissionResponse: {req("requestId", kID), opt("optionId", kID), enumf("outcome", false, string(OutcomeSelected), string(OutcomeCancelled)), opt("requestSeq", kInt)},
}

// DecodeCommand decodes and validates a POST /sessions/:id/commands body
// with the same single pass as events (scan.go), against commandSchemas.
// A client-sent id is ignored: the server assigns ids.
func DecodeCommand(body []byte) (Command, error) {
	var c Command
	if !utf8.Valid(body) {
		return c, utf8Error(body)
	}
	var d decoder
	d.b = body
	i := skipSpace(body, 0)
	start := i
	if i < len(body) && body[i] == '{' {
		ms, end, ok := d.object(i, 1, d.buf[:0])
		if ok && skipSpace(body, end) == len(body) {
			if err := d.command(ms, &c); err != nil {
				err.Index = -1
				return Command{}, err
			}
			return c, nil
		}
	} else if end, ok := skipValue(body, i, 1); ok && skipSpace(body, end) == len(body) {
		if body[start] == 'n' {
			// null decodes to no object at all: no type.
			return c, &FieldError{Index: -1, Field: "type", Reason: "required"}
		}
		return c, &FieldError{Index: -1, Reason: "body is not a JSON object: found " + jsonKind(body[start])}
	}
	return c, &FieldError{Index: -1, Reason: "body is not a JSON object: " + syntaxReason(body, new(map[string]json.RawMessage))}
}

// utf8Error refuses a body that is not UTF-8, saying where: the whole
// body is refused for one byte, and in a batch of a thousand events
// "body is not valid UTF-8" alone left its sender to search for it.
func utf8Error(body []byte) *FieldError {
	off := 0
	for off < len(body) {
		r, n := utf8.DecodeRune(body[off:])
		if r == utf8.RuneError && n == 1 {
			break
		}
		off += n
	}
	if off == len(body) {
		return &FieldError{Index: -1, Reason: "body is not valid UTF-8"}
	}
	return &FieldError{Index: -1, Reason: fmt.Sprintf("body is not valid UTF-8: byte 0x%02x at offset %d", body[off], off)}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// jsonReason turns an encoding/json error into a short reason without Go
// type names.
func jsonReason(err error) string {
	var se *json.SyntaxError
	if ok := asSyntax(err, &se); ok {
		return fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, se.Error())
	}
	if te, ok := err.(*json.UnmarshalTypeError); ok {
		return "found " + te.Value
	}
	return "invalid JSON: " + err.Error()
}

func asSyntax(err error, target **json.SyntaxError) bool {
	se, ok := err.(*json.SyntaxError)
	if ok {
		*target = se
	}
	return ok
}
