package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The decoder: one pass over the body that checks the JSON syntax, finds
// each object's members, and checks and stores each member the schema
// table (eventSchemas, commandSchemas) names, straight into the Event or
// Command. Nothing is decoded twice and nothing goes through reflection or
// a map of raw values. encoding/json is used only where it is the
// definition: to word a syntax error (a body this scanner refuses is
// handed to encoding/json for the message), to unescape a string that has
// escapes, and to compact the free-form values (input, result, ...).
// FuzzDecodeReference holds it to the reference decoder built from
// encoding/json and the same table (reference_test.go), and to
// json.Valid.

// maxDepth is encoding/json's nesting limit; deeper is a syntax error
// there, so it is one here.
const maxDepth = 10000

// member is one key of a JSON object and its value.
type member struct {
	// name is the key when it is one the schemas know (interned, so
	// comparing names is cheap), "" for any other key.
	name string
	val  []byte // the value's JSON text
	// escaped: the key had escapes (it was unescaped to find name).
	escaped bool
}

// knownNames interns every key the schemas name, so scanning a key does
// not allocate.
var knownNames = func() map[string]string {
	out := map[string]string{"type": "type", "code": "code"}
	var add func([]field)
	add = func(fs []field) {
		for _, f := range fs {
			out[f.name] = f.name
			add(f.elem)
		}
	}
	add(envelope)
	for _, fs := range eventSchemas {
		add(fs)
	}
	for _, fs := range commandSchemas {
		add(fs)
	}
	return out
}()

// eventTypes interns the event type names.
var eventTypes = func() map[string]EventType {
	out := map[string]EventType{}
	for t := range eventSchemas {
		out[string(t)] = t
	}
	return out
}()

// decoder holds one body and scratch space for the members of one object.
type decoder struct {
	b   []byte
	buf [24]member
	// unlimited leaves the limits a sender can meet by cutting unchecked
	// (DecodeEventUnlimited).
	unlimited bool
}

func decode(body []byte, wantRaw, unlimited bool) ([]Event, [][]byte, error) {
	if !utf8.Valid(body) {
		return nil, nil, utf8Error(body)
	}
	d := decoder{b: body, unlimited: unlimited}
	i := skipSpace(body, 0)
	if i < len(body) && body[i] == '[' {
		return d.batch(i, wantRaw)
	}
	// One event. Its size counts from its first byte to the end of the
	// body, as it always has.
	if n := len(body) - i; n > MaxEventBytes && !unlimited {
		return nil, nil, &FieldError{Index: 0, Reason: fmt.Sprintf("event is %d bytes; at most %d are allowed", n, MaxEventBytes), code: CodeTooLarge}
	}
	events := make([]Event, 1)
	var raws [][]byte
	if i < len(body) && body[i] == '{' {
		ms, end, ok := d.object(i, 1, d.buf[:0])
		if ok && skipSpace(body, end) == len(body) {
			safe, err := d.event(ms, &events[0])
			if err != nil {
				err.Index = 0
				return nil, nil, err
			}
			if wantRaw {
				raws = make([][]byte, 1)
				if safe {
					raws[0] = body[i:end]
				}
			}
			return events, raws, nil
		}
	} else if end, ok := skipValue(body, i, 1); ok && skipSpace(body, end) == len(body) {
		return nil, nil, &FieldError{Index: 0, Reason: "not a JSON object: found " + jsonKind(body[i])}
	}
	return nil, nil, &FieldError{Index: 0, Reason: "not a JSON object: " + syntaxReason(body[i:], new(map[string]json.RawMessage))}
}

// batch decodes a JSON array of events starting at b[i]. A syntax error
// anywhere in the body is reported first, then an empty or oversized
// batch, then the first event refused: so events after a refused one are
// still scanned, for syntax only.
func (d *decoder) batch(i int, wantRaw bool) ([]Event, [][]byte, error) {
	b := d.b
	open := i // syntax errors are worded from the '[', as they always were
	events := make([]Event, 0, countHint(b))
	var raws [][]byte
	if wantRaw {
		raws = make([][]byte, 0, cap(events))
	}
	var first *FieldError
	n := 0
	i = skipSpace(b, i+1)
	syntaxOK := false
	if i < len(b) && b[i] == ']' {
		syntaxOK = skipSpace(b, i+1) == len(b)
	} else {
		for {
			start := i
			var end int
			var ok bool
			if first == nil && n < MaxBatchEvents && i < len(b) && b[i] == '{' {
				var ms []member
				ms, end, ok = d.object(i, 2, d.buf[:0])
				if !ok {
					break
				}
				events = append(events, Event{})
				safe, err := false, (*FieldError)(nil)
				if end-start > MaxEventBytes {
					err = &FieldError{Reason: fmt.Sprintf("event is %d bytes; at most %d are allowed", end-start, MaxEventBytes), code: CodeTooLarge}
				} else {
					safe, err = d.event(ms, &events[n])
				}
				if err != nil {
					err.Index = n
					first = err
				} else if wantRaw {
					var raw []byte
					if safe {
						raw = b[start:end]
					}
					raws = append(raws, raw)
				}
			} else {
				end, ok = skipValue(b, i, 2)
				if !ok {
					break
				}
				if first == nil && n < MaxBatchEvents {
					if end-start > MaxEventBytes {
						first = &FieldError{Index: n, Reason: fmt.Sprintf("event is %d bytes; at most %d are allowed", end-start, MaxEventBytes), code: CodeTooLarge}
					} else {
						first = &FieldError{Index: n, Reason: "not a JSON object: found " + jsonKind(b[start])}
					}
				}
			}
			n++
			i = skipSpace(b, end)
			if i < len(b) && b[i] == ',' {
				i = skipSpace(b, i+1)
				continue
			}
			if i < len(b) && b[i] == ']' {
				syntaxOK = skipSpace(b, i+1) == len(b)
			}
			break
		}
	}
	switch {
	case !syntaxOK:
		return nil, nil, &FieldError{Index: -1, Reason: "body is not a JSON array of events: " + syntaxReason(b[open:], new([]json.RawMessage))}
	case n == 0:
		return nil, nil, &FieldError{Index: -1, Reason: "event batch is empty"}
	case n > MaxBatchEvents:
		return nil, nil, &FieldError{Index: -1, Reason: fmt.Sprintf("batch has %d events; at most %d are allowed", n, MaxBatchEvents), code: CodeTooLarge}
	case first != nil:
		return nil, nil, first
	}
	return events, raws, nil
}

// countHint guesses a batch's length from its size, to size the slices
// once: agentd's deltas are about 90 bytes each.
func countHint(b []byte) int {
	return min(len(b)/64+1, MaxBatchEvents)
}

// event checks and stores one event's members. safe reports whether
// json.Unmarshal of the object's bytes gives the same Event: every key is
// exactly one the type's schema (or the envelope) names, once, with a
// string, number or boolean value, and there is no receivedAt.
func (d *decoder) event(ms []member, ev *Event) (safe bool, _ *FieldError) {
	tv := last(ms, "type")
	if tv == nil || isNullVal(tv) {
		return false, &FieldError{Field: "type", Reason: "required"}
	}
	if tv[0] != '"' {
		return false, &FieldError{Field: "type", Reason: "must be a string"}
	}
	var t EventType
	if et, ok := eventTypes[string(tv[1:len(tv)-1])]; ok {
		t = et // the common case: no escapes, a known type, no allocation
	} else {
		s, _ := d.str(tv)
		if t, ok = eventTypes[s]; !ok {
			return false, &FieldError{Field: "type", Reason: fmt.Sprintf("unknown event type %q", s)}
		}
	}
	schema := eventSchemas[t]
	*ev = Event{Type: t}
	if err := d.fields(ms, envelope, "", eventSetter{ev}); err != nil {
		return false, err
	}
	if err := d.fields(ms, schema, "", eventSetter{ev}); err != nil {
		return false, err
	}
	if v := last(ms, "agentSeq"); v != nil && !isNullVal(v) && ev.AgentSeq < 1 {
		return false, &FieldError{Field: "agentSeq", Reason: "must be at least 1"}
	}
	ev.ReceivedAt = 0
	return rawSafe(ms, schema), nil
}

// rawSafe: see event.
func rawSafe(ms []member, schema []field) bool {
	for i := range ms {
		m := &ms[i]
		if m.name == "" || m.escaped || m.name == "receivedAt" {
			return false
		}
		switch m.val[0] {
		case '{', '[', 'n':
			return false
		}
		if m.name != "type" && m.name != "agentSeq" && m.name != "ts" && !inSchema(schema, m.name) {
			return false
		}
		for j := range i {
			if ms[j].name == m.name {
				return false
			}
		}
	}
	return true
}

func inSchema(fs []field, name string) bool {
	for i := range fs {
		if fs[i].name == name {
			return true
		}
	}
	return false
}

// command checks and stores a command's members.
func (d *decoder) command(ms []member, c *Command) *FieldError {
	tv := last(ms, "type")
	if tv == nil || isNullVal(tv) {
		return &FieldError{Field: "type", Reason: "required"}
	}
	if tv[0] != '"' {
		return &FieldError{Field: "type", Reason: "must be a string"}
	}
	s, _ := d.str(tv)
	schema, ok := commandSchemas[CommandType(s)]
	if !ok {
		return &FieldError{Field: "type", Reason: fmt.Sprintf("unknown command type %q (want prompt, abort or permission_response)", s)}
	}
	*c = Command{Type: CommandType(s)}
	if err := d.fields(ms, schema, "", commandSetter{c: c}); err != nil {
		return err
	}
	if c.Type == CommandPrompt && strings.TrimSpace(c.Text) == "" {
		// Blank is no prompt, as a create's prompt (server decodeCreate):
		// stored, it went to the agent, whose model refuses it, and
		// the turn failed after a 202.
		return &FieldError{Field: "text", Reason: "must not be blank (only whitespace)"}
	}
	if c.Type == CommandPermissionResponse {
		switch {
		case c.Outcome == OutcomeCancelled && c.OptionID != "":
			return &FieldError{Field: "optionId", Reason: "must be absent when outcome is cancelled"}
		case c.Outcome != OutcomeCancelled && c.OptionID == "":
			return &FieldError{Field: "optionId", Reason: "required unless outcome is cancelled"}
		case c.Outcome == "":
			c.Outcome = OutcomeSelected
		}
		// 0 would read as absent (any request under the id): a seq is
		// never below 1.
		if v := last(ms, "requestSeq"); v != nil && !isNullVal(v) && c.RequestSeq < 1 {
			return &FieldError{Field: "requestSeq", Reason: "must be a positive integer: the seq of the permission artifact answered"}
		}
	}
	return nil
}

// setter stores checked values; name is the field's JSON name.
type setter interface {
	setString(name, s string)
	setInt(name string, n int64) bool // false: out of the field's range
	setFloat(name string, x float64)
	setBool(name string, v bool)
	setRaw(name string, raw json.RawMessage)
	// nested decodes a field with elem (an object or an array of
	// objects); it is the only caller of fields with a prefix.
	nested(d *decoder, f *field, name string, v []byte) *FieldError
}

// fields checks ms against fs in table order (so the first field the table
// lists is the one an error names) and stores each value present.
func (d *decoder) fields(ms []member, fs []field, prefix string, set setter) *FieldError {
	for fi := range fs {
		f := &fs[fi]
		v := last(ms, f.name)
		if v == nil || isNullVal(v) {
			if f.required {
				return &FieldError{Field: prefix + f.name, Reason: "required"}
			}
			continue
		}
		switch f.kind {
		case kString, kID:
			if v[0] != '"' {
				return &FieldError{Field: prefix + f.name, Reason: "must be a string"}
			}
			s, _ := d.str(v)
			if f.kind == kID {
				if err := validateEventID(s); err != nil {
					return &FieldError{Field: prefix + f.name, Reason: err.Error()}
				}
			}
			if len(s) > MaxTextLen && !d.unlimited {
				return &FieldError{Field: prefix + f.name, Reason: fmt.Sprintf("is %d bytes; at most %d are allowed", len(s), MaxTextLen)}
			}
			if f.nonEmpty && s == "" {
				return &FieldError{Field: prefix + f.name, Reason: "must not be empty"}
			}
			if len(f.enum) > 0 && !contains(f.enum, s) {
				return &FieldError{Field: prefix + f.name, Reason: fmt.Sprintf("must be one of %v, not %q", f.enum, s)}
			}
			set.setString(f.name, s)
		case kInt:
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || !set.setInt(f.name, n) {
				return &FieldError{Field: prefix + f.name, Reason: "must be an integer"}
			}
		case kNumber:
			if !isNumberStart(v[0]) {
				return &FieldError{Field: prefix + f.name, Reason: "must be a number"}
			}
			x, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				return &FieldError{Field: prefix + f.name, Reason: "must be a number"}
			}
			set.setFloat(f.name, x)
		case kBool:
			if v[0] != 't' && v[0] != 'f' {
				return &FieldError{Field: prefix + f.name, Reason: "must be true or false"}
			}
			set.setBool(f.name, v[0] == 't')
		case kObject:
			if v[0] != '{' {
				return &FieldError{Field: prefix + f.name, Reason: "must be an object"}
			}
			if err := set.nested(d, f, prefix+f.name, v); err != nil {
				return err
			}
		case kArray:
			if v[0] != '[' {
				return &FieldError{Field: prefix + f.name, Reason: "must be an array"}
			}
			if f.elem == nil {
				if err := checkFree(v, prefix+f.name); err != nil {
					return err
				}
				set.setRaw(f.name, compactRaw(v))
				continue
			}
			if err := set.nested(d, f, prefix+f.name, v); err != nil {
				return err
			}
		case kAny:
			if err := checkFree(v, prefix+f.name); err != nil {
				return err
			}
			set.setRaw(f.name, compactRaw(v))
		}
	}
	return nil
}

// elements returns the values of the array v (already scanned as valid),
// checking the field's item bound and that each is an object, and calls
// fn with each object's members.
func (d *decoder) elements(f *field, name string, v []byte, fn func(i int, ms []member) *FieldError) *FieldError {
	var items [][]byte
	i := skipSpace(v, 1)
	for i < len(v) && v[i] != ']' {
		end, _ := skipValue(v, i, 1) // v was validated when its event was scanned
		items = append(items, v[i:end])
		i = skipSpace(v, end)
		if i < len(v) && v[i] == ',' {
			i = skipSpace(v, i+1)
		}
	}
	if f.maxItems > 0 && len(items) > f.maxItems && !(d.unlimited && f.cuttable) {
		return &FieldError{Field: name, Reason: fmt.Sprintf("has %d items; at most %d are allowed", len(items), f.maxItems)}
	}
	for k, it := range items {
		if it[0] != '{' {
			return &FieldError{Field: fmt.Sprintf("%s[%d]", name, k), Reason: "must be an object"}
		}
		sub := decoder{b: it}
		ms, _, _ := sub.object(0, 1, sub.buf[:0])
		if err := fn(k, ms); err != nil {
			return err
		}
	}
	return nil
}

// eventSetter stores into an Event. It is one pointer, so passing it as a
// setter does not allocate.
type eventSetter struct {
	ev *Event
}

func (s eventSetter) setString(name, v string) {
	e := s.ev
	switch name {
	case "id":
		e.ID = v
	case "model":
		e.Model = v
	case "cwd":
		e.Cwd = v
	case "signal":
		e.Signal = v
	case "error":
		e.Error = v
	case "turnId":
		e.TurnID = v
	case "promptId":
		e.PromptID = v
	case "source":
		e.Source = Source(v)
	case "stopReason":
		e.StopReason = StopReason(v)
	case "resultText":
		e.ResultText = v
	case "text":
		e.Text = v
	case "delta":
		e.Delta = v
	case "name":
		e.Name = v
	case "kind":
		e.Kind = v
	case "title":
		e.Title = v
	case "status":
		e.Status = ToolStatus(v)
	case "stream":
		e.Stream = v
	case "output":
		e.Output = v
	case "toolCallId":
		e.ToolCallID = v
	case "outcome":
		e.Outcome = Outcome(v)
	case "optionId":
		e.OptionID = v
	case "path":
		e.Path = v
	case "change":
		e.Change = ChangeKind(v)
	case "diff":
		e.Diff = v
	case "summary":
		e.Summary = v
	case "level":
		e.Level = NoticeLevel(v)
	case "message":
		e.Message = v
	case "code":
		e.NoticeCode = v // notice; agent_exited's code is a number
	default:
		panic("protocol: no Event field for string " + name)
	}
}

func (s eventSetter) setInt(name string, n int64) bool {
	e := s.ev
	switch name {
	case "agentSeq":
		e.AgentSeq = n
	case "ts":
		e.Ts = n
	case "receivedAt":
		// Checked, then discarded: only the server stamps it.
	case "code", "exitCode":
		c := int(n)
		if int64(c) != n {
			return false
		}
		if name == "code" {
			e.ExitStatus = &c
		} else {
			e.ExitCode = &c
		}
	case "inputTokens":
		e.InputTokens = &n
	case "outputTokens":
		e.OutputTokens = &n
	case "cachedInputTokens":
		e.CachedInputTokens = &n
	case "contextUsed":
		e.ContextUsed = &n
	case "contextSize":
		e.ContextSize = &n
	default:
		panic("protocol: no Event field for integer " + name)
	}
	return true
}

func (s eventSetter) setFloat(name string, x float64) {
	if name != "costUsd" {
		panic("protocol: no Event field for number " + name)
	}
	s.ev.CostUSD = &x
}

func (s eventSetter) setBool(name string, v bool) {
	if name != "redacted" {
		panic("protocol: no Event field for boolean " + name)
	}
	s.ev.Redacted = v
}

func (s eventSetter) setRaw(name string, raw json.RawMessage) {
	e := s.ev
	switch name {
	case "capabilities":
		e.Capabilities = raw
	case "input":
		e.Input = raw
	case "locations":
		e.Locations = raw
	case "content":
		e.Content = raw
	case "result":
		e.Result = raw
	default:
		panic("protocol: no Event field for raw " + name)
	}
}

func (s eventSetter) nested(d *decoder, f *field, name string, v []byte) *FieldError {
	e := s.ev
	switch f.name {
	case "agent":
		sub := decoder{b: v}
		ms, _, _ := sub.object(0, 1, sub.buf[:0])
		a := &AgentInfo{}
		if err := d.fields(ms, f.elem, name+".", agentSetter{a: a}); err != nil {
			return err
		}
		e.Agent = a
	case "entries":
		e.Entries = []PlanEntry{}
		return d.elements(f, name, v, func(i int, ms []member) *FieldError {
			e.Entries = append(e.Entries, PlanEntry{})
			return d.fields(ms, f.elem, fmt.Sprintf("%s[%d].", name, i), planSetter{p: &e.Entries[i]})
		})
	case "options":
		e.Options = []PermissionOption{}
		return d.elements(f, name, v, func(i int, ms []member) *FieldError {
			e.Options = append(e.Options, PermissionOption{})
			return d.fields(ms, f.elem, fmt.Sprintf("%s[%d].", name, i), optionSetter{o: &e.Options[i]})
		})
	default:
		panic("protocol: no Event field for nested " + f.name)
	}
	return nil
}

// leafSetter is a setter for objects with string fields only.
type leafSetter struct{}

func (leafSetter) setInt(name string, _ int64) bool { panic("protocol: no integer field " + name) }
func (leafSetter) setFloat(name string, _ float64)  { panic("protocol: no number field " + name) }
func (leafSetter) setBool(name string, _ bool)      { panic("protocol: no boolean field " + name) }
func (leafSetter) setRaw(name string, _ json.RawMessage) {
	panic("protocol: no raw field " + name)
}
func (leafSetter) nested(_ *decoder, f *field, _ string, _ []byte) *FieldError {
	panic("protocol: no nested field " + f.name)
}

type agentSetter struct {
	leafSetter
	a *AgentInfo
}

func (s agentSetter) setString(name, v string) {
	switch name {
	case "name":
		s.a.Name = v
	case "version":
		s.a.Version = v
	case "protocol":
		s.a.Protocol = v
	}
}

type planSetter struct {
	leafSetter
	p *PlanEntry
}

func (s planSetter) setString(name, v string) {
	switch name {
	case "content":
		s.p.Content = v
	case "status":
		s.p.Status = PlanStatus(v)
	case "priority":
		s.p.Priority = v
	}
}

type optionSetter struct {
	leafSetter
	o *PermissionOption
}

func (s optionSetter) setString(name, v string) {
	switch name {
	case "id":
		s.o.ID = v
	case "name":
		s.o.Name = v
	case "kind":
		s.o.Kind = OptionKind(v)
	}
}

type commandSetter struct {
	leafSetter
	c *Command
}

func (s commandSetter) setString(name, v string) {
	switch name {
	case "text":
		s.c.Text = v
	case "requestId":
		s.c.RequestID = v
	case "optionId":
		s.c.OptionID = v
	case "outcome":
		s.c.Outcome = Outcome(v)
	}
}

func (s commandSetter) setInt(name string, n int64) bool {
	if name == "requestSeq" {
		s.c.RequestSeq = n
	}
	return true
}

func (s commandSetter) setBool(name string, v bool) {
	if name == "queue" {
		s.c.Queue = v
	}
}

// last returns the value of the last member named name (encoding/json's
// rule for a repeated key), or nil.
func last(ms []member, name string) []byte {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].name == name {
			return ms[i].val
		}
	}
	return nil
}

func isNullVal(v []byte) bool { return v[0] == 'n' }

func isNumberStart(c byte) bool { return c == '-' || c >= '0' && c <= '9' }

// str decodes a string value (scanned as valid). Without escapes it is the
// bytes between the quotes; with them encoding/json unescapes it, so
// escapes (and bad surrogates, which become U+FFFD) mean what they always
// have.
func (d *decoder) str(v []byte) (string, bool) {
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	var s string
	err := json.Unmarshal(v, &s)
	return s, err == nil
}

// checkFree refuses a free-form value (scanned as valid) that nests
// deeper than MaxValueDepth or holds a number beyond a 64-bit float,
// whichever comes first. JSON's grammar allows 1e999, but JavaScript
// reads it as Infinity and encoding/json not at all: once stored, every
// Go reader of the artifact failed on it (the server's own start, loading
// the approvals inbox, and the Go client), so it is refused at the door
// like any other bad value.
func checkFree(v []byte, name string) *FieldError {
	depth := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			i, _, _ = scanString(v, i)
			i-- // past the quote, less the loop's step
		case c == '[' || c == '{':
			if depth++; depth > MaxValueDepth {
				return valueTooDeep(name)
			}
		case c == ']' || c == '}':
			depth--
		case isNumberStart(c):
			end, _ := scanNumber(v, i)
			if err := numberInRange(string(v[i:end]), name); err != nil {
				return err
			}
			i = end - 1
		}
	}
	return nil
}

// valueTooDeep is checkFree's refusal of a value nested too deep, shared
// with the reference decoder.
func valueTooDeep(name string) *FieldError {
	return &FieldError{Field: name, Reason: fmt.Sprintf("nests deeper than %d levels", MaxValueDepth)}
}

// numberInRange is checkFree's test of one number, shared with the
// reference decoder so both word it alike.
func numberInRange(num, name string) *FieldError {
	if _, err := strconv.ParseFloat(num, 64); err == nil {
		return nil
	}
	if len(num) > 32 {
		num = num[:32] + "…"
	}
	return &FieldError{Field: name, Reason: "holds the number " + num + ", beyond the range of a 64-bit float (about ±1.8e308)"}
}

// compactRaw returns a free-form value as encoding/json marshals a
// json.RawMessage: compacted, with <, > and & escaped, so that decoding
// what an Event encodes to gives the same bytes back.
func compactRaw(v []byte) json.RawMessage {
	b, err := json.Marshal(json.RawMessage(v))
	if err != nil {
		// v was scanned as valid JSON, which Marshal accepts.
		panic("protocol: compact a scanned value: " + err.Error())
	}
	return b
}

// jsonKind names the JSON type of the value starting with c, as
// encoding/json words a type mismatch.
func jsonKind(c byte) string {
	switch c {
	case '"':
		return "string"
	case '[':
		return "array"
	case '{':
		return "object"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

// syntaxReason words why b is not valid JSON the way encoding/json does,
// by decoding it into into. The scanner calls it only for a body it
// refused; should encoding/json accept it after all, the reason says so
// rather than inventing a position (FuzzDecodeReference looks for that).
func syntaxReason(b []byte, into any) string {
	if err := json.Unmarshal(b, into); err != nil {
		return jsonReason(err)
	}
	return "invalid JSON"
}

// object scans the object starting at b[i] (a '{'), at nesting depth
// depth, appending its members to ms. It returns the index just past the
// '}', and false on any syntax error, anywhere inside.
func (d *decoder) object(i, depth int, ms []member) ([]member, int, bool) {
	b := d.b
	if depth > maxDepth {
		return nil, 0, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return ms, i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, 0, false
		}
		end, escaped, ok := scanString(b, i)
		if !ok {
			return nil, 0, false
		}
		m := member{escaped: escaped}
		if !escaped {
			m.name = knownNames[string(b[i+1:end-1])]
		} else {
			var k string
			if json.Unmarshal(b[i:end], &k) == nil {
				m.name = knownNames[k]
			}
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return nil, 0, false
		}
		i = skipSpace(b, i+1)
		start := i
		i, ok = skipValue(b, i, depth+1)
		if !ok {
			return nil, 0, false
		}
		m.val = b[start:i]
		ms = append(ms, m)
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, 0, false
		}
		if b[i] == '}' {
			return ms, i + 1, true
		}
		if b[i] != ',' {
			return nil, 0, false
		}
		i = skipSpace(b, i+1)
	}
}

// skipValue returns the index just past the JSON value starting at b[i],
// at nesting depth depth (a container there is at that depth), checking
// its syntax completely.
func skipValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		end, _, ok := scanString(b, i)
		return end, ok
	case c == '{':
		if depth > maxDepth {
			return 0, false
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, true
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return 0, false
			}
			end, _, ok := scanString(b, i)
			if !ok {
				return 0, false
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ':' {
				return 0, false
			}
			if i, ok = skipValue(b, skipSpace(b, i+1), depth+1); !ok {
				return 0, false
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return 0, false
			}
			if b[i] == '}' {
				return i + 1, true
			}
			if b[i] != ',' {
				return 0, false
			}
			i = skipSpace(b, i+1)
		}
	case c == '[':
		if depth > maxDepth {
			return 0, false
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, true
		}
		for {
			var ok bool
			if i, ok = skipValue(b, i, depth+1); !ok {
				return 0, false
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return 0, false
			}
			if b[i] == ']' {
				return i + 1, true
			}
			if b[i] != ',' {
				return 0, false
			}
			i = skipSpace(b, i+1)
		}
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case isNumberStart(c):
		return scanNumber(b, i)
	}
	return 0, false
}

func literal(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the index just past the string starting at b[i] (a
// quote) and whether it has escapes, checking the escapes and refusing
// control characters. The body was checked to be valid UTF-8 before.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, true
		case c == '\\':
			escaped = true
			i++
			if i >= len(b) {
				return 0, false, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i < 5 {
					return 0, false, false
				}
				for _, h := range b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return 0, false, false
					}
				}
				i += 4
			default:
				return 0, false, false
			}
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
	// An empty object ({}) cannot be an event: it has no type.
	out = append(out, `,"receivedAt":`...)
	out = strconv.AppendInt(out, receivedAt, 10)
	return append(out, '}')
}
