package protocol

// The reference decoder: the checked path as it was before the single pass
// (decode.go), built from encoding/json (a map of raw values per object,
// each value decoded to check it, the checked fields re-encoded and decoded
// into the struct) and the same schema table. It is slow and obviously
// right; FuzzDecodeReference holds the single pass to it: the same answer,
// the same events, the same error message, for any body.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

func refDecodeEvents(trimmed []byte) ([]Event, error) {
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
		if err := refDecodeEvent(raw, &events[i]); err != nil {
			err.Index = i
			return nil, err
		}
	}
	return events, nil
}

func refDecodeEvent(raw []byte, ev *Event) *FieldError {
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
	case kAny:
		return refCheckFree(v, name)
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
			return refCheckFree(v, name)
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

// refCheckFree walks v's tokens in order and refuses the first container
// deeper than MaxValueDepth or number strconv.ParseFloat (which
// encoding/json decodes numbers with) refuses.
func refCheckFree(v json.RawMessage, name string) *FieldError {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // the end: v was checked to be valid
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			if depth++; depth > MaxValueDepth {
				return valueTooDeep(name)
			}
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
		if n, ok := tok.(json.Number); ok {
			if err := numberInRange(string(n), name); err != nil {
				return err
			}
		}
	}
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

// refDecodeCommand is the command decoder as it was before the single pass.
// A client-sent id is ignored: the server assigns ids.
func refDecodeCommand(body []byte) (Command, error) {
	var c Command
	if !utf8.Valid(body) {
		return c, utf8Error(body)
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
	if c.Type == CommandPrompt && strings.TrimSpace(c.Text) == "" {
		return Command{}, &FieldError{Index: -1, Field: "text", Reason: "must not be blank (only whitespace)"}
	}
	if c.Type == CommandPermissionResponse {
		switch {
		case c.Outcome == OutcomeCancelled && c.OptionID != "":
			return c, &FieldError{Index: -1, Field: "optionId", Reason: "must be absent when outcome is cancelled"}
		case c.Outcome != OutcomeCancelled && c.OptionID == "":
			return c, &FieldError{Index: -1, Field: "optionId", Reason: "required unless outcome is cancelled"}
		case c.Outcome == "":
			c.Outcome = OutcomeSelected
		}
		if v, ok := m["requestSeq"]; ok && !isNull(v) && c.RequestSeq < 1 {
			return Command{}, &FieldError{Index: -1, Field: "requestSeq", Reason: "must be a positive integer: the seq of the permission artifact answered"}
		}
	}
	return c, nil
}
