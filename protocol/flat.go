package protocol

import (
	"encoding/json"
	"reflect"
	"strconv"
)

// The flat path decodes the hot events (deltas, and anything else whose
// keys are all exactly named scalar fields of its type) in one pass over
// the bytes, instead of a map of raw values, a decode of each string to
// check it and a decode of the whole event into the struct: a batch of 500
// deltas went from 3.7 ms and 21k allocations to 0.6 ms and 3.5k. It
// accepts only what the checked path (decodeChecked) accepts and fills the
// Event it would (FuzzDecodeFast holds it to that); on anything else
// (nesting, nulls, duplicate, unknown or escaped keys, a value that fails
// a check) it gives up and the checked path decodes the body again, which
// also words the error.

// flatValue is one key's value as scanned.
type flatValue struct {
	key  string
	raw  []byte // the value's JSON text
	kind kind   // kString, kBool or kNumber (for any number)
	str  string // the decoded string, for kString
}

// maxFlatKeys bounds the keys the flat path takes; the hot events have a
// handful.
const maxFlatKeys = 16

// flatField says where a flat key goes in Event.
type flatField struct {
	index []int
	typ   reflect.Type
}

// flatFields maps each JSON name of Event's scalar fields to its field.
// "code" is not among them: it depends on the type (see Event).
var flatFields = func() map[string]flatField {
	out := map[string]flatField{}
	t := reflect.TypeFor[eventFields]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := cutComma(f.Tag.Get("json"))
		if name == "" || name == "-" {
			continue
		}
		out[name] = flatField{index: f.Index, typ: f.Type}
	}
	return out
}()

// flatNames interns the keys and type names the flat path knows, so
// scanning does not allocate a string per key.
var flatNames = func() map[string]string {
	out := map[string]string{"code": "code"}
	for name := range flatFields {
		out[name] = name
	}
	for t := range eventSchemas {
		out[string(t)] = string(t)
	}
	return out
}()

func cutComma(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// decodeFlat decodes raw into ev when the flat path applies and reports
// whether it did (ok), and whether raw has a receivedAt key. ev is left
// half-filled when it did not.
func decodeFlat(raw []byte, ev *Event) (received, ok bool) {
	var buf [maxFlatKeys]flatValue
	vals, ok := scanFlat(raw, buf[:0])
	if !ok {
		return false, false
	}
	var typ *flatValue
	for i := range vals {
		if vals[i].key == "type" {
			typ = &vals[i]
		}
	}
	if typ == nil || typ.kind != kString {
		return false, false
	}
	t := EventType(typ.str)
	schema, ok := eventSchemas[t]
	if !ok {
		return false, false
	}
	keys := flatKeys[t]
	for i := range vals {
		if !keys[vals[i].key] {
			return false, false
		}
		for j := range i {
			if vals[j].key == vals[i].key {
				return false, false
			}
		}
	}
	if !checkFlat(vals, envelope) || !checkFlat(vals, schema) {
		return false, false
	}
	*ev = Event{}
	rv := reflect.ValueOf(ev).Elem()
	for i := range vals {
		v := &vals[i]
		if v.key == "code" {
			if !setCode(ev, t, v) {
				return false, false
			}
			continue
		}
		f, ok := flatFields[v.key]
		if !ok || !setFlat(rv.FieldByIndex(f.index), v) {
			return false, false
		}
	}
	if ev.AgentSeq < 0 || (ev.AgentSeq == 0 && has(vals, "agentSeq")) {
		return false, false
	}
	ev.ReceivedAt = 0
	return has(vals, "receivedAt"), true
}

func has(vals []flatValue, key string) bool {
	for i := range vals {
		if vals[i].key == key {
			return true
		}
	}
	return false
}

// checkFlat is checkFields for scanned values: false where checkFields
// would refuse, or where the value is not one the flat path decodes.
func checkFlat(vals []flatValue, fields []field) bool {
	for _, f := range fields {
		var v *flatValue
		for i := range vals {
			if vals[i].key == f.name {
				v = &vals[i]
				break
			}
		}
		if v == nil {
			if f.required {
				return false
			}
			continue
		}
		switch f.kind {
		case kString, kID:
			if v.kind != kString {
				return false
			}
			s := v.str
			if f.kind == kID && validateEventID(s) != nil {
				return false
			}
			if len(s) > MaxTextLen || (f.nonEmpty && s == "") || (len(f.enum) > 0 && !contains(f.enum, s)) {
				return false
			}
		case kInt:
			if v.kind != kNumber {
				return false
			}
			if _, err := strconv.ParseInt(string(v.raw), 10, 64); err != nil {
				return false
			}
		case kNumber:
			if v.kind != kNumber {
				return false
			}
			if _, err := strconv.ParseFloat(string(v.raw), 64); err != nil {
				return false
			}
		case kBool:
			if v.kind != kBool {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// setCode puts "code" where Event.UnmarshalJSON does.
func setCode(ev *Event, t EventType, v *flatValue) bool {
	switch t {
	case EventAgentExited:
		if v.kind != kNumber {
			return false
		}
		n, err := strconv.ParseInt(string(v.raw), 10, strconv.IntSize)
		if err != nil {
			return false
		}
		c := int(n)
		ev.ExitStatus = &c
	case EventNotice:
		if v.kind != kString {
			return false
		}
		ev.NoticeCode = v.str
	default:
		return false
	}
	return true
}

// setFlat sets f to v as encoding/json would, for the field types Event
// gives its scalar fields.
func setFlat(f reflect.Value, v *flatValue) bool {
	if f.Kind() == reflect.Pointer {
		p := reflect.New(f.Type().Elem())
		if !setFlat(p.Elem(), v) {
			return false
		}
		f.Set(p)
		return true
	}
	switch f.Kind() {
	case reflect.String:
		if v.kind != kString {
			return false
		}
		f.SetString(v.str)
	case reflect.Bool:
		if v.kind != kBool {
			return false
		}
		f.SetBool(v.raw[0] == 't')
	case reflect.Int, reflect.Int64:
		if v.kind != kNumber {
			return false
		}
		n, err := strconv.ParseInt(string(v.raw), 10, 64)
		if err != nil || f.OverflowInt(n) {
			return false
		}
		f.SetInt(n)
	case reflect.Float64:
		if v.kind != kNumber {
			return false
		}
		x, err := strconv.ParseFloat(string(v.raw), 64)
		if err != nil {
			return false
		}
		f.SetFloat(x)
	default:
		return false
	}
	return true
}

// scanFlat scans one JSON object whose values are all strings, numbers or
// booleans, followed by nothing but white space. It returns false for
// anything else, including escaped keys and values it cannot take.
// DecodeEvents checked that the body is valid UTF-8, so the bytes between
// two quotes are too.
func scanFlat(b []byte, vals []flatValue) ([]flatValue, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if len(vals) == maxFlatKeys || i >= len(b) || b[i] != '"' {
				return nil, false
			}
			end, escaped, ok := scanString(b, i)
			if !ok || escaped {
				return nil, false
			}
			key, known := flatNames[string(b[i+1:end-1])]
			if !known {
				return nil, false
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ':' {
				return nil, false
			}
			i = skipSpace(b, i+1)
			if i >= len(b) {
				return nil, false
			}
			v := flatValue{key: key}
			start := i
			switch c := b[i]; {
			case c == '"':
				end, escaped, ok := scanString(b, i)
				if !ok {
					return nil, false
				}
				v.kind, v.raw = kString, b[start:end]
				if escaped {
					// Rare in the hot events; encoding/json words the
					// escapes (and replaces bad surrogates) as it would.
					if json.Unmarshal(v.raw, &v.str) != nil {
						return nil, false
					}
				} else if name, ok := flatNames[string(b[start+1:end-1])]; ok {
					v.str = name // a type name, most likely
				} else {
					v.str = string(b[start+1 : end-1])
				}
				i = end
			case c == 't' || c == 'f':
				lit := "false"
				if c == 't' {
					lit = "true"
				}
				if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
					return nil, false
				}
				i += len(lit)
				v.kind, v.raw = kBool, b[start:i]
			case c == '-' || c >= '0' && c <= '9':
				end, ok := scanNumber(b, i)
				if !ok {
					return nil, false
				}
				v.kind, v.raw = kNumber, b[start:end]
				i = end
			default: // null, objects, arrays: the checked path's
				return nil, false
			}
			vals = append(vals, v)
			i = skipSpace(b, i)
			if i >= len(b) {
				return nil, false
			}
			if b[i] == '}' {
				i++
				break
			}
			if b[i] != ',' {
				return nil, false
			}
			i = skipSpace(b, i+1)
		}
	}
	if skipSpace(b, i) != len(b) {
		return nil, false
	}
	return vals, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the index just past the string starting at b[i] (a
// quote) and whether it has escapes. Control characters make it invalid;
// escapes are only skipped here, and their validity is left to
// encoding/json.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, true
		case c == '\\':
			escaped = true
			i++
		case c < 0x20:
			return 0, false, false
		}
	}
	return 0, false, false
}

// scanNumber returns the index just past the JSON number at b[i].
func scanNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0, false
		}
	}
	return i, true
}

// splitArray splits a JSON array into its elements without copying them,
// the way json.Unmarshal into []json.RawMessage would for a valid array,
// which it also is about a third of the time of decoding a batch of
// deltas. It only checks the array's own syntax: an element it cut wrong
// is invalid JSON, which decoding the element refuses, and DecodeEvents
// then decodes the whole body again the checked way for the error. Empty
// and oversized arrays are left to that path too.
func splitArray(b []byte) ([][]byte, bool) {
	if len(b) == 0 || b[0] != '[' {
		return nil, false
	}
	i := skipSpace(b, 1)
	out := make([][]byte, 0, 64)
	for {
		if len(out) == MaxBatchEvents || i >= len(b) {
			return nil, false
		}
		end, ok := skipValue(b, i)
		if !ok {
			return nil, false
		}
		out = append(out, b[i:end])
		i = skipSpace(b, end)
		if i >= len(b) {
			return nil, false
		}
		if b[i] == ']' {
			break
		}
		if b[i] != ',' {
			return nil, false
		}
		i = skipSpace(b, i+1)
	}
	if skipSpace(b, i+1) != len(b) {
		return nil, false
	}
	return out, true
}

// skipValue returns the index just past the value starting at b[i],
// counting brackets and skipping strings; see splitArray.
func skipValue(b []byte, i int) (int, bool) {
	depth := 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			end, _, ok := scanString(b, i)
			if !ok {
				return 0, false
			}
			i = end
		case '{', '[':
			depth++
			i++
		case '}', ']':
			if depth == 0 {
				return i, i > 0
			}
			depth--
			i++
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i, true
			}
			i++
		default:
			i++
		}
		if depth == 0 && i > 0 && (b[i-1] == '}' || b[i-1] == ']' || b[i-1] == '"') {
			return i, true
		}
	}
	return 0, false
}

// StampRaw returns the bytes of an event that DecodeEventsRaw returned,
// with "receivedAt" added as their last key: what json.Unmarshal decodes to
// the event with ReceivedAt set. The result is a new slice.
func StampRaw(raw []byte, receivedAt int64) []byte {
	end := len(raw)
	for end > 0 && raw[end-1] != '}' {
		end-- // white space after a lone event
	}
	out := make([]byte, 0, end+32)
	out = append(out, raw[:end-1]...)
	out = append(out, `,"receivedAt":`...)
	out = strconv.AppendInt(out, receivedAt, 10)
	return append(out, '}')
}
