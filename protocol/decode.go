package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
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
		{name: "entries", kind: kArray, required: true, maxItems: MaxPlanEntries, elem: []field{
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
	events, _, err := decodeEvents(body, false)
	return events, err
}

// DecodeEventsRaw is DecodeEvents that also returns, per event, its bytes
// in body when the event is exactly what they decode to (with json.Unmarshal)
// and they carry no receivedAt; nil otherwise. A store can then keep those
// bytes, with receivedAt added as the last key, instead of encoding the
// event again. The bytes alias body.
func DecodeEventsRaw(body []byte) ([]Event, [][]byte, error) {
	return decodeEvents(body, true)
}

func decodeEvents(body []byte, wantRaw bool) ([]Event, [][]byte, error) {
	if !utf8.Valid(body) {
		return nil, nil, &FieldError{Index: -1, Reason: "body is not valid UTF-8"}
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if events, raws, ok := decodeFast(trimmed, wantRaw); ok {
		return events, raws, nil
	}
	events, err := decodeChecked(trimmed)
	if err != nil {
		return nil, nil, err
	}
	if wantRaw {
		return events, make([][]byte, len(events)), nil
	}
	return events, nil, nil
}

// decodeFast decodes a body without json.Unmarshal into a []RawMessage,
// and each event that can take it by the flat path (see flat.go). It
// returns false when any event is refused; decodeChecked then decodes the
// body again, the checked way, which words the error as it always has
// (an array this splits wrong has an element that is refused).
func decodeFast(trimmed []byte, wantRaw bool) ([]Event, [][]byte, bool) {
	var items [][]byte
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var ok bool
		if items, ok = splitArray(trimmed); !ok {
			return nil, nil, false
		}
	} else {
		items = [][]byte{trimmed}
	}
	events := make([]Event, len(items))
	var raws [][]byte
	if wantRaw {
		raws = make([][]byte, len(items))
	}
	for i, item := range items {
		if len(item) > MaxEventBytes {
			return nil, nil, false
		}
		received, ok := decodeFlat(item, &events[i])
		if !ok {
			// Not flat (a tool call's input, a plan): this one event the
			// checked way, so one such event in a batch of deltas does not
			// send the whole batch down the slow path.
			if decodeEvent(item, &events[i]) != nil {
				return nil, nil, false
			}
			continue
		}
		if wantRaw && !received {
			raws[i] = item
		}
	}
	return events, raws, true
}

// decodeChecked is the general decoder: every value checked against the
// schemas before it is decoded.
func decodeChecked(trimmed []byte) ([]Event, error) {
	var raws []json.RawMessage
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, &FieldError{Index: -1, Reason: "body is not a JSON array of events: " + jsonReason(err)}
		}
		if len(raws) == 0 {
			return nil, &FieldError{Index: -1, Reason: "event batch is empty"}
		}
		if len(raws) > MaxBatchEvents {
			return nil, &FieldError{Index: -1, Reason: fmt.Sprintf("batch has %d events; at most %d are allowed", len(raws), MaxBatchEvents), code: CodeTooLarge}
		}
	} else {
		raws = []json.RawMessage{trimmed}
	}
	events := make([]Event, len(raws))
	for i, raw := range raws {
		if err := decodeEvent(raw, &events[i]); err != nil {
			err.Index = i
			return nil, err
		}
	}
	return events, nil
}

func decodeEvent(raw []byte, ev *Event) *FieldError {
	if len(raw) > MaxEventBytes {
		return &FieldError{Reason: fmt.Sprintf("event is %d bytes; at most %d are allowed", len(raw), MaxEventBytes), code: CodeTooLarge}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return &FieldError{Reason: "not a JSON object: " + jsonReason(err)}
	}
	if m == nil {
		return &FieldError{Reason: "not a JSON object: found null"}
	}
	tv, ok := m["type"]
	if !ok || isNull(tv) {
		return &FieldError{Field: "type", Reason: "required"}
	}
	var t string
	if json.Unmarshal(tv, &t) != nil {
		return &FieldError{Field: "type", Reason: "must be a string"}
	}
	schema, ok := eventSchemas[EventType(t)]
	if !ok {
		return &FieldError{Field: "type", Reason: fmt.Sprintf("unknown event type %q", t)}
	}
	if err := checkFields(m, envelope, ""); err != nil {
		return err
	}
	if err := checkFields(m, schema, ""); err != nil {
		return err
	}
	if v, ok := m["agentSeq"]; ok && !isNull(v) {
		if n, _ := strconv.ParseInt(string(v), 10, 64); n < 1 {
			return &FieldError{Field: "agentSeq", Reason: "must be at least 1"}
		}
	}
	var err error
	if plainKeys(m, EventType(t)) {
		// Every key is exactly one the schema checked and none nests, so
		// decoding the raw bytes cannot take in anything unchecked. This
		// is the path of the hot events (deltas), and it is one decode
		// instead of three.
		err = json.Unmarshal(raw, ev)
	} else {
		err = unmarshalChecked(m, tv, ev, envelope, schema)
	}
	if err != nil {
		return &FieldError{Reason: jsonReason(err)}
	}
	ev.ReceivedAt = 0
	return nil
}

// checkFields validates m against fields; prefix names the enclosing field.
func checkFields(m map[string]json.RawMessage, fields []field, prefix string) *FieldError {
	for _, f := range fields {
		name := prefix + f.name
		v, ok := m[f.name]
		if !ok || isNull(v) {
			if f.required {
				return &FieldError{Field: name, Reason: "required"}
			}
			continue
		}
		if err := checkValue(v, f, name); err != nil {
			return err
		}
	}
	return nil
}

func checkValue(v json.RawMessage, f field, name string) *FieldError {
	switch f.kind {
	case kString, kID:
		var s string
		if v[0] != '"' || json.Unmarshal(v, &s) != nil {
			return &FieldError{Field: name, Reason: "must be a string"}
		}
		if f.kind == kID {
			if err := validateEventID(s); err != nil {
				return &FieldError{Field: name, Reason: err.Error()}
			}
		}
		if len(s) > MaxTextLen {
			return &FieldError{Field: name, Reason: fmt.Sprintf("is %d bytes; at most %d are allowed", len(s), MaxTextLen)}
		}
		if f.nonEmpty && s == "" {
			return &FieldError{Field: name, Reason: "must not be empty"}
		}
		if len(f.enum) > 0 && !contains(f.enum, s) {
			return &FieldError{Field: name, Reason: fmt.Sprintf("must be one of %v, not %q", f.enum, s)}
		}
	case kInt:
		if _, err := strconv.ParseInt(string(v), 10, 64); err != nil {
			return &FieldError{Field: name, Reason: "must be an integer"}
		}
	case kNumber:
		if v[0] == '"' || v[0] == '{' || v[0] == '[' || v[0] == 't' || v[0] == 'f' {
			return &FieldError{Field: name, Reason: "must be a number"}
		}
		if _, err := strconv.ParseFloat(string(v), 64); err != nil {
			return &FieldError{Field: name, Reason: "must be a number"}
		}
	case kBool:
		if string(v) != "true" && string(v) != "false" {
			return &FieldError{Field: name, Reason: "must be true or false"}
		}
	case kObject:
		var m map[string]json.RawMessage
		if v[0] != '{' || json.Unmarshal(v, &m) != nil {
			return &FieldError{Field: name, Reason: "must be an object"}
		}
		return checkFields(m, f.elem, name+".")
	case kArray:
		if v[0] != '[' {
			return &FieldError{Field: name, Reason: "must be an array"}
		}
		if f.elem == nil {
			return nil
		}
		var items []json.RawMessage
		if json.Unmarshal(v, &items) != nil {
			return &FieldError{Field: name, Reason: "must be an array"}
		}
		if f.maxItems > 0 && len(items) > f.maxItems {
			return &FieldError{Field: name, Reason: fmt.Sprintf("has %d items; at most %d are allowed", len(items), f.maxItems)}
		}
		for i, it := range items {
			var m map[string]json.RawMessage
			if len(it) == 0 || it[0] != '{' || json.Unmarshal(it, &m) != nil {
				return &FieldError{Field: fmt.Sprintf("%s[%d]", name, i), Reason: "must be an object"}
			}
			if err := checkFields(m, f.elem, fmt.Sprintf("%s[%d].", name, i)); err != nil {
				return err
			}
		}
	}
	return nil
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
	CommandPrompt:             {{name: "text", kind: kString, required: true, nonEmpty: true}},
	CommandAbort:              nil,
	CommandPermissionResponse: {req("requestId", kID), opt("optionId", kID), enumf("outcome", false, string(OutcomeSelected), string(OutcomeCancelled))},
}

// DecodeCommand decodes and validates a POST /sessions/:id/commands body.
// A client-sent id is ignored: the server assigns ids.
func DecodeCommand(body []byte) (Command, error) {
	var c Command
	if !utf8.Valid(body) {
		return c, &FieldError{Index: -1, Reason: "body is not valid UTF-8"}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return c, &FieldError{Index: -1, Reason: "body is not a JSON object: " + jsonReason(err)}
	}
	tv, ok := m["type"]
	if !ok || isNull(tv) {
		return c, &FieldError{Index: -1, Field: "type", Reason: "required"}
	}
	var t string
	if json.Unmarshal(tv, &t) != nil {
		return c, &FieldError{Index: -1, Field: "type", Reason: "must be a string"}
	}
	schema, ok := commandSchemas[CommandType(t)]
	if !ok {
		return c, &FieldError{Index: -1, Field: "type", Reason: fmt.Sprintf("unknown command type %q (want prompt, abort or permission_response)", t)}
	}
	if err := checkFields(m, schema, ""); err != nil {
		err.Index = -1
		return c, err
	}
	if err := unmarshalChecked(m, tv, &c, schema); err != nil {
		return c, &FieldError{Index: -1, Reason: jsonReason(err)}
	}
	c.ID = 0
	if c.Type == CommandPermissionResponse {
		switch {
		case c.Outcome == OutcomeCancelled && c.OptionID != "":
			return c, &FieldError{Index: -1, Field: "optionId", Reason: "must be absent when outcome is cancelled"}
		case c.Outcome != OutcomeCancelled && c.OptionID == "":
			return c, &FieldError{Index: -1, Field: "optionId", Reason: "required unless outcome is cancelled"}
		case c.Outcome == "":
			c.Outcome = OutcomeSelected
		}
	}
	return c, nil
}

// flatKeys holds, per event type, the keys whose values the schema checks
// completely and that decode to the same value from raw bytes: "type", the
// envelope, and the type's scalar fields. Objects and arrays are left to
// the checked path (a nested object could hide a case-variant key, and raw
// JSON values are compacted there).
var flatKeys = func() map[EventType]map[string]bool {
	out := map[EventType]map[string]bool{}
	for t, fields := range eventSchemas {
		keys := map[string]bool{"type": true}
		for _, f := range append(append([]field(nil), envelope...), fields...) {
			switch f.kind {
			case kString, kID, kInt, kNumber, kBool:
				keys[f.name] = true
			}
		}
		out[t] = keys
	}
	return out
}()

// plainKeys reports whether every key of m is an exactly named, flat field
// of type t.
func plainKeys(m map[string]json.RawMessage, t EventType) bool {
	keys := flatKeys[t]
	for k, v := range m {
		if !keys[k] || isNull(v) {
			return false
		}
	}
	return true
}

// unmarshalChecked decodes into v only the fields the schemas checked, under
// their exact names, without nulls. Decoding the raw body instead would let
// encoding/json's case-insensitive key matching smuggle unchecked values
// past the schema ({"type":"prompt","Type":"shutdown"}, "ID":"../x", a
// "Status" the reducer trusts), and would put fields of other types into
// the struct unchecked.
func unmarshalChecked(m map[string]json.RawMessage, typ json.RawMessage, v any, schemas ...[]field) error {
	clean := map[string]json.RawMessage{"type": typ}
	for _, fields := range schemas {
		keepFields(m, fields, clean)
	}
	b, err := json.Marshal(clean)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// keepFields copies the non-null fields of m that fields lists into out,
// filtering nested objects and arrays of objects the same way.
func keepFields(m map[string]json.RawMessage, fields []field, out map[string]json.RawMessage) {
	for _, f := range fields {
		v, ok := m[f.name]
		if !ok || isNull(v) {
			continue
		}
		if f.elem != nil {
			switch f.kind {
			case kObject:
				var sub map[string]json.RawMessage
				_ = json.Unmarshal(v, &sub) // checked by checkValue
				clean := map[string]json.RawMessage{}
				keepFields(sub, f.elem, clean)
				v, _ = json.Marshal(clean)
			case kArray:
				var items []map[string]json.RawMessage
				_ = json.Unmarshal(v, &items) // checked by checkValue
				clean := make([]map[string]json.RawMessage, len(items))
				for i, it := range items {
					clean[i] = map[string]json.RawMessage{}
					keepFields(it, f.elem, clean[i])
				}
				v, _ = json.Marshal(clean)
			}
		}
		out[f.name] = v
	}
}

func isNull(v json.RawMessage) bool { return len(v) == 0 || string(v) == "null" }

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
