package protocol_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// JSON kinds of fields, as PROTOCOL.md states them.
type jkind int

const (
	jString jkind = iota // a string (ids and enums are strings too)
	jInt
	jNumber
	jBool
	jObject
	jArray
	jAny
)

type fieldSpec struct {
	name  string
	kind  jkind
	valid string // a valid JSON value
}

type eventSpec struct {
	typ      protocol.EventType
	required []fieldSpec
	optional []fieldSpec
}

// eventSpecs is PROTOCOL.md's ReinEvent table, written out independently
// of the decoder's schema so that a drift between the two fails a test.
var eventSpecs = []eventSpec{
	{typ: protocol.EventHeartbeat},
	{
		typ:      protocol.EventAgentStarted,
		required: []fieldSpec{{"agent", jObject, `{"name":"claude-code","protocol":"acp"}`}},
		optional: []fieldSpec{{"model", jString, `"m"`}, {"cwd", jString, `"/w"`}, {"capabilities", jAny, `{"a":1}`}},
	},
	{
		typ:      protocol.EventAgentExited,
		optional: []fieldSpec{{"code", jInt, `1`}, {"signal", jString, `"SIGTERM"`}, {"error", jString, `"e"`}},
	},
	{
		typ:      protocol.EventTurnStarted,
		required: []fieldSpec{{"turnId", jString, `"t1"`}, {"source", jString, `"agent"`}},
		optional: []fieldSpec{{"promptId", jString, `"p1"`}},
	},
	{
		typ:      protocol.EventUserMessage,
		required: []fieldSpec{{"text", jString, `"hi"`}},
		optional: []fieldSpec{{"id", jString, `"u1"`}, {"promptId", jString, `"p1"`}},
	},
	{
		typ:      protocol.EventTextDelta,
		required: []fieldSpec{{"delta", jString, `"d"`}},
		optional: []fieldSpec{{"id", jString, `"b1"`}},
	},
	{
		typ:      protocol.EventTextEnd,
		optional: []fieldSpec{{"id", jString, `"b1"`}, {"text", jString, `"t"`}},
	},
	{
		typ:      protocol.EventReasoningDelta,
		required: []fieldSpec{{"delta", jString, `"d"`}},
		optional: []fieldSpec{{"id", jString, `"r1"`}},
	},
	{
		typ:      protocol.EventReasoningEnd,
		optional: []fieldSpec{{"id", jString, `"r1"`}, {"text", jString, `"t"`}, {"redacted", jBool, `true`}},
	},
	{
		typ:      protocol.EventToolCallStart,
		required: []fieldSpec{{"id", jString, `"c1"`}, {"name", jString, `"Bash"`}},
		optional: []fieldSpec{{"kind", jString, `"execute"`}, {"title", jString, `"t"`}, {"input", jAny, `{"x":1}`}},
	},
	{
		typ:      protocol.EventToolInputDelta,
		required: []fieldSpec{{"id", jString, `"c1"`}, {"delta", jString, `"{\"a"`}},
	},
	{
		typ:      protocol.EventToolCallUpdate,
		required: []fieldSpec{{"id", jString, `"c1"`}},
		optional: []fieldSpec{
			{"status", jString, `"running"`}, {"title", jString, `"t"`}, {"kind", jString, `"read"`},
			{"name", jString, `"Read"`}, {"input", jAny, `[1]`}, {"locations", jArray, `[{"path":"a"}]`}, {"content", jAny, `"c"`},
		},
	},
	{
		typ:      protocol.EventToolOutputDelta,
		required: []fieldSpec{{"id", jString, `"c1"`}, {"delta", jString, `"out"`}},
		optional: []fieldSpec{{"stream", jString, `"stdout"`}},
	},
	{
		typ:      protocol.EventToolCallEnd,
		required: []fieldSpec{{"id", jString, `"c1"`}, {"status", jString, `"completed"`}},
		optional: []fieldSpec{{"output", jString, `"o"`}, {"result", jAny, `true`}, {"error", jString, `"e"`}, {"exitCode", jInt, `0`}},
	},
	{
		typ:      protocol.EventPlanUpdated,
		required: []fieldSpec{{"entries", jArray, `[{"content":"a","status":"pending"}]`}},
		optional: []fieldSpec{{"id", jString, `"plan"`}},
	},
	{
		typ: protocol.EventPermissionRequested,
		required: []fieldSpec{
			{"id", jString, `"q1"`}, {"title", jString, `"Allow?"`},
			{"options", jArray, `[{"id":"a","name":"Allow","kind":"allow_once"}]`},
		},
		optional: []fieldSpec{{"toolCallId", jString, `"c1"`}, {"input", jAny, `null`}},
	},
	{
		typ:      protocol.EventPermissionResolved,
		required: []fieldSpec{{"id", jString, `"q1"`}, {"outcome", jString, `"cancelled"`}},
		optional: []fieldSpec{{"optionId", jString, `"a"`}},
	},
	{
		typ:      protocol.EventFileChanged,
		required: []fieldSpec{{"path", jString, `"a.go"`}, {"change", jString, `"delete"`}},
		optional: []fieldSpec{{"diff", jString, `"-x"`}, {"toolCallId", jString, `"c1"`}},
	},
	{
		typ: protocol.EventUsageUpdated,
		optional: []fieldSpec{
			{"inputTokens", jInt, `1`}, {"outputTokens", jInt, `2`}, {"cachedInputTokens", jInt, `3`},
			{"costUsd", jNumber, `0.5`}, {"contextUsed", jInt, `4`}, {"contextSize", jInt, `5`},
		},
	},
	{
		typ:      protocol.EventSessionInfo,
		optional: []fieldSpec{{"title", jString, `"t"`}, {"summary", jString, `"s"`}},
	},
	{
		typ:      protocol.EventNotice,
		required: []fieldSpec{{"level", jString, `"info"`}, {"message", jString, `"m"`}},
		optional: []fieldSpec{{"code", jString, `"c"`}},
	},
	{
		typ:      protocol.EventTurnCompleted,
		required: []fieldSpec{{"stopReason", jString, `"end_turn"`}},
		optional: []fieldSpec{{"turnId", jString, `"t1"`}, {"error", jString, `"e"`}, {"resultText", jString, `"r"`}},
	},
}

var envelopeSpec = []fieldSpec{{"agentSeq", jInt, `1`}, {"ts", jInt, `2`}, {"receivedAt", jInt, `3`}}

var specByType = func() map[protocol.EventType]eventSpec {
	m := map[protocol.EventType]eventSpec{}
	for _, s := range eventSpecs {
		m[s.typ] = s
	}
	return m
}()

// eventJSON builds an event object of typ from the fields in order,
// skipping the names in drop.
func eventJSON(typ protocol.EventType, fields []fieldSpec, drop string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"type":%q`, typ)
	for _, f := range fields {
		if f.name != drop {
			fmt.Fprintf(&b, `,%q:%s`, f.name, f.valid)
		}
	}
	return b.String() + "}"
}

// with returns fields with name set to value (added when absent).
func with(fields []fieldSpec, name, value string) []fieldSpec {
	out := make([]fieldSpec, 0, len(fields)+1)
	found := false
	for _, f := range fields {
		if f.name == name {
			f.valid, found = value, true
		}
		out = append(out, f)
	}
	if !found {
		out = append(out, fieldSpec{name: name, valid: value})
	}
	return out
}

// wantErr checks err is a decode error with exactly the message msg and
// the code code.
func wantErr(t *testing.T, err error, msg string, code protocol.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %q", msg)
	}
	if got := err.Error(); got != msg {
		t.Errorf("err = %q\nwant  %q", got, msg)
	}
	if got := protocol.CodeOf(err); got != code {
		t.Errorf("CodeOf(err) = %q, want %q", got, code)
	}
	var fe *protocol.FieldError
	if !errors.As(err, &fe) {
		t.Errorf("err is %T, want a *protocol.FieldError", err)
	}
	if !errors.Is(err, &protocol.Error{Code: code}) {
		t.Errorf("errors.Is(err, code %s) = false", code)
	}
}

func TestKnownEventTypes(t *testing.T) {
	if len(eventSpecs) != 22 {
		t.Fatalf("spec table has %d types, want 22", len(eventSpecs))
	}
	for _, s := range eventSpecs {
		if !protocol.KnownEventType(s.typ) {
			t.Errorf("KnownEventType(%q) = false", s.typ)
		}
	}
	for _, typ := range []protocol.EventType{"", "Heartbeat", "text", "tool_call", "session_removed"} {
		if protocol.KnownEventType(typ) {
			t.Errorf("KnownEventType(%q) = true", typ)
		}
	}
}

func TestDecodeEventsMinimal(t *testing.T) {
	for _, s := range eventSpecs {
		t.Run(string(s.typ), func(t *testing.T) {
			body := eventJSON(s.typ, s.required, "")
			evs, err := protocol.DecodeEvents([]byte(body))
			if err != nil {
				t.Fatalf("DecodeEvents(%s): %v", body, err)
			}
			if len(evs) != 1 || evs[0].Type != s.typ {
				t.Fatalf("DecodeEvents(%s) = %+v", body, evs)
			}
			// Every optional field at once, envelope included, and the
			// same as explicit nulls (null means absent).
			all := append(append(append([]fieldSpec{}, envelopeSpec...), s.required...), s.optional...)
			body = eventJSON(s.typ, all, "")
			if _, err := protocol.DecodeEvents([]byte(body)); err != nil {
				t.Errorf("DecodeEvents(%s): %v", body, err)
			}
			nulls := append([]fieldSpec{}, s.required...)
			for _, f := range append(append([]fieldSpec{}, envelopeSpec...), s.optional...) {
				nulls = append(nulls, fieldSpec{name: f.name, valid: "null"})
			}
			body = eventJSON(s.typ, nulls, "")
			got, err := protocol.DecodeEvents([]byte(body))
			if err != nil {
				t.Fatalf("DecodeEvents(%s): %v", body, err)
			}
			if !reflect.DeepEqual(got, evs) {
				t.Errorf("with nulls: %+v, want %+v", got, evs)
			}
		})
	}
}

func TestDecodeEventsRequired(t *testing.T) {
	for _, s := range eventSpecs {
		for _, f := range s.required {
			t.Run(string(s.typ)+"/"+f.name, func(t *testing.T) {
				for _, body := range []string{
					eventJSON(s.typ, s.required, f.name),
					eventJSON(s.typ, with(s.required, f.name, "null"), ""),
				} {
					_, err := protocol.DecodeEvents([]byte(body))
					wantErr(t, err, "events[0]."+f.name+": required", protocol.CodeInvalid)
					// In a batch the index is the event's.
					batch := "[" + eventJSON(protocol.EventHeartbeat, nil, "") + "," + body + "]"
					_, err = protocol.DecodeEvents([]byte(batch))
					wantErr(t, err, "events[1]."+f.name+": required", protocol.CodeInvalid)
				}
			})
		}
	}
}

// TestDecodeEventsWrongKind sends every field of every type every JSON kind
// it must not have.
func TestDecodeEventsWrongKind(t *testing.T) {
	values := map[jkind]string{jString: `"7"`, jInt: `7`, jNumber: `7.5`, jBool: `true`, jObject: `{}`, jArray: `[]`}
	reasons := map[jkind]string{
		jString: "must be a string", jInt: "must be an integer", jNumber: "must be a number",
		jBool: "must be true or false", jObject: "must be an object", jArray: "must be an array",
	}
	for _, s := range eventSpecs {
		fields := append(append(append([]fieldSpec{}, envelopeSpec...), s.required...), s.optional...)
		for _, f := range fields {
			if f.kind == jAny {
				continue
			}
			for k, v := range values {
				if k == f.kind || f.kind == jNumber && k == jInt {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s=%s", s.typ, f.name, v), func(t *testing.T) {
					body := eventJSON(s.typ, with(append(append([]fieldSpec{}, s.required...), f), f.name, v), "")
					_, err := protocol.DecodeEvents([]byte("[" + body + "]"))
					wantErr(t, err, "events[0]."+f.name+": "+reasons[f.kind], protocol.CodeInvalid)
				})
			}
		}
	}
}

func TestDecodeEventsAnyKind(t *testing.T) {
	for _, s := range eventSpecs {
		for _, f := range s.optional {
			if f.kind != jAny {
				continue
			}
			for _, v := range []string{`"s"`, `1`, `true`, `{"a":[1]}`, `[{}]`} {
				body := eventJSON(s.typ, append(append([]fieldSpec{}, s.required...), fieldSpec{f.name, jAny, v}), "")
				if _, err := protocol.DecodeEvents([]byte(body)); err != nil {
					t.Errorf("DecodeEvents(%s): %v", body, err)
				}
			}
		}
	}
}

func TestDecodeEventsErrors(t *testing.T) {
	long := strings.Repeat("a", 129)
	tests := []struct {
		name string
		body string
		want string
		code protocol.Code
	}{
		// Body shape.
		{"invalid JSON", `{"type":`, `events[0]: not a JSON object: invalid JSON at byte 8: unexpected end of JSON input`, protocol.CodeInvalid},
		{"invalid JSON array", `[{"type":"heartbeat"},`, `body is not a JSON array of events: invalid JSON at byte 22: unexpected end of JSON input`, protocol.CodeInvalid},
		{"empty body", ``, `events[0]: not a JSON object: invalid JSON at byte 0: unexpected end of JSON input`, protocol.CodeInvalid},
		{"empty array", ` [ ] `, `event batch is empty`, protocol.CodeInvalid},
		{"not an object", `"heartbeat"`, `events[0]: not a JSON object: found string`, protocol.CodeInvalid},
		{"number in batch", `[{"type":"heartbeat"},1]`, `events[1]: not a JSON object: found number`, protocol.CodeInvalid},
		{"null event", `[null]`, `events[0]: not a JSON object: found null`, protocol.CodeInvalid},
		// Where: a batch of a thousand events refused for one byte must
		// say which.
		{"invalid UTF-8", "{\"type\":\"text_delta\",\"delta\":\"\xff\"}", `body is not valid UTF-8: byte 0xff at offset 30`, protocol.CodeInvalid},
		{"invalid UTF-8 in a batch", "[{\"type\":\"heartbeat\"},{\"type\":\"text_delta\",\"delta\":\"caf\xc3\"}]", `body is not valid UTF-8: byte 0xc3 at offset 55`, protocol.CodeInvalid},
		// type.
		{"missing type", `{"delta":"x"}`, `events[0].type: required`, protocol.CodeInvalid},
		{"null type", `{"type":null}`, `events[0].type: required`, protocol.CodeInvalid},
		{"number type", `{"type":1}`, `events[0].type: must be a string`, protocol.CodeInvalid},
		{"object type", `[{"type":"heartbeat"},{"type":{}}]`, `events[1].type: must be a string`, protocol.CodeInvalid},
		{"unknown type", `[{"type":"heartbeat"},{"type":"heartbeat"},{"type":"text_delta_v2"}]`, `events[2].type: unknown event type "text_delta_v2"`, protocol.CodeInvalid},
		{"type case", `{"type":"Heartbeat"}`, `events[0].type: unknown event type "Heartbeat"`, protocol.CodeInvalid},
		// The brief's example, exactly.
		{"delta number", `[{"type":"heartbeat"},{"type":"heartbeat"},{"type":"text_delta","delta":5}]`, `events[2].delta: must be a string`, protocol.CodeInvalid},
		// Envelope.
		{"agentSeq zero", `{"type":"heartbeat","agentSeq":0}`, `events[0].agentSeq: must be at least 1`, protocol.CodeInvalid},
		{"agentSeq negative", `{"type":"heartbeat","agentSeq":-3}`, `events[0].agentSeq: must be at least 1`, protocol.CodeInvalid},
		{"agentSeq float", `{"type":"heartbeat","agentSeq":1.5}`, `events[0].agentSeq: must be an integer`, protocol.CodeInvalid},
		{"agentSeq exponent", `{"type":"heartbeat","agentSeq":1e3}`, `events[0].agentSeq: must be an integer`, protocol.CodeInvalid},
		{"agentSeq overflow", `{"type":"heartbeat","agentSeq":9223372036854775808}`, `events[0].agentSeq: must be an integer`, protocol.CodeInvalid},
		{"ts string", `{"type":"heartbeat","ts":"1"}`, `events[0].ts: must be an integer`, protocol.CodeInvalid},
		// Enums.
		{"source", `{"type":"turn_started","turnId":"t","source":"system"}`, `events[0].source: must be one of [user agent], not "system"`, protocol.CodeInvalid},
		{"end status", `{"type":"tool_call_end","id":"c","status":"running"}`, `events[0].status: must be one of [completed failed cancelled denied], not "running"`, protocol.CodeInvalid},
		{"update status awaiting_approval", `{"type":"tool_call_update","id":"c","status":"awaiting_approval"}`, `events[0].status: must be one of [pending running completed failed cancelled denied], not "awaiting_approval"`, protocol.CodeInvalid},
		{"stream", `{"type":"tool_output_delta","id":"c","delta":"x","stream":"stdin"}`, `events[0].stream: must be one of [stdout stderr], not "stdin"`, protocol.CodeInvalid},
		{"outcome", `{"type":"permission_resolved","id":"q","outcome":"approved"}`, `events[0].outcome: must be one of [selected cancelled], not "approved"`, protocol.CodeInvalid},
		{"change", `{"type":"file_changed","path":"a","change":"modify"}`, `events[0].change: must be one of [add update delete], not "modify"`, protocol.CodeInvalid},
		{"level", `{"type":"notice","level":"debug","message":"m"}`, `events[0].level: must be one of [info warning error], not "debug"`, protocol.CodeInvalid},
		{"stopReason", `{"type":"turn_completed","stopReason":"done"}`, `events[0].stopReason: must be one of [end_turn cancelled max_tokens max_turns refusal error interrupted], not "done"`, protocol.CodeInvalid},
		{"empty enum", `{"type":"turn_completed","stopReason":""}`, `events[0].stopReason: must be one of [end_turn cancelled max_tokens max_turns refusal error interrupted], not ""`, protocol.CodeInvalid},
		// Non-empty strings.
		{"empty tool name", `{"type":"tool_call_start","id":"c","name":""}`, `events[0].name: must not be empty`, protocol.CodeInvalid},
		{"empty path", `{"type":"file_changed","path":"","change":"add"}`, `events[0].path: must not be empty`, protocol.CodeInvalid},
		// Ids.
		{"id space", `{"type":"tool_call_start","id":"a b","name":"n"}`, `events[0].id: may contain only letters, digits, '.', '_', ':' and '-' (found ' ')`, protocol.CodeInvalid},
		{"id slash", `{"type":"text_delta","id":"../x","delta":"d"}`, `events[0].id: may contain only letters, digits, '.', '_', ':' and '-' (found '/')`, protocol.CodeInvalid},
		{"id non-ASCII", `{"type":"turn_started","turnId":"tür","source":"user"}`, `events[0].turnId: may contain only letters, digits, '.', '_', ':' and '-' (found a non-printable byte)`, protocol.CodeInvalid},
		{"id control", `{"type":"user_message","text":"t","promptId":"a\nb"}`, `events[0].promptId: may contain only letters, digits, '.', '_', ':' and '-' (found a non-printable byte)`, protocol.CodeInvalid},
		{"id empty", `{"type":"text_end","id":""}`, `events[0].id: must not be empty`, protocol.CodeInvalid},
		{"id too long", `{"type":"tool_input_delta","id":"` + long + `","delta":"d"}`, `events[0].id: longer than 128 characters`, protocol.CodeInvalid},
		{"toolCallId", `{"type":"file_changed","path":"a","change":"add","toolCallId":"x y"}`, `events[0].toolCallId: may contain only letters, digits, '.', '_', ':' and '-' (found ' ')`, protocol.CodeInvalid},
		{"optionId", `{"type":"permission_resolved","id":"q","outcome":"selected","optionId":"#1"}`, `events[0].optionId: may contain only letters, digits, '.', '_', ':' and '-' (found '#')`, protocol.CodeInvalid},
		// Nested.
		{"agent.name missing", `{"type":"agent_started","agent":{"protocol":"acp"}}`, `events[0].agent.name: required`, protocol.CodeInvalid},
		{"agent.name empty", `{"type":"agent_started","agent":{"name":"","protocol":"acp"}}`, `events[0].agent.name: must not be empty`, protocol.CodeInvalid},
		{"agent.protocol number", `{"type":"agent_started","agent":{"name":"a","protocol":2}}`, `events[0].agent.protocol: must be a string`, protocol.CodeInvalid},
		{"agent.version bool", `{"type":"agent_started","agent":{"name":"a","protocol":"p","version":true}}`, `events[0].agent.version: must be a string`, protocol.CodeInvalid},
		{"agent array", `{"type":"agent_started","agent":[]}`, `events[0].agent: must be an object`, protocol.CodeInvalid},
		{"entries[1].status", `{"type":"plan_updated","entries":[{"content":"a","status":"pending"},{"content":"b","status":"done"}]}`, `events[0].entries[1].status: must be one of [pending in_progress completed], not "done"`, protocol.CodeInvalid},
		{"entries[0].content missing", `{"type":"plan_updated","entries":[{"status":"pending"}]}`, `events[0].entries[0].content: required`, protocol.CodeInvalid},
		{"entries[0].priority number", `{"type":"plan_updated","entries":[{"content":"a","status":"pending","priority":1}]}`, `events[0].entries[0].priority: must be a string`, protocol.CodeInvalid},
		{"entries[2] not object", `{"type":"plan_updated","entries":[{"content":"a","status":"pending"},{"content":"b","status":"pending"},"c"]}`, `events[0].entries[2]: must be an object`, protocol.CodeInvalid},
		{"entries[0] null", `{"type":"plan_updated","entries":[null]}`, `events[0].entries[0]: must be an object`, protocol.CodeInvalid},
		{"options[0].kind", `{"type":"permission_requested","id":"q","title":"t","options":[{"id":"a","name":"A","kind":"allow"}]}`, `events[0].options[0].kind: must be one of [allow_once allow_always reject_once reject_always], not "allow"`, protocol.CodeInvalid},
		{"options[1].id", `{"type":"permission_requested","id":"q","title":"t","options":[{"id":"a","name":"A","kind":"allow_once"},{"id":"b c","name":"B","kind":"reject_once"}]}`, `events[0].options[1].id: may contain only letters, digits, '.', '_', ':' and '-' (found ' ')`, protocol.CodeInvalid},
		{"options[0].name missing", `{"type":"permission_requested","id":"q","title":"t","options":[{"id":"a","kind":"allow_once"}]}`, `events[0].options[0].name: required`, protocol.CodeInvalid},
		{"agent_exited code string", `{"type":"agent_exited","code":"1"}`, `events[0].code: must be an integer`, protocol.CodeInvalid},
		{"notice code number", `{"type":"notice","level":"info","message":"m","code":1}`, `events[0].code: must be a string`, protocol.CodeInvalid},
		// Limits.
		{"too many options", `{"type":"permission_requested","id":"q","title":"t","options":[` + repeatJoin(`{"id":"a","name":"A","kind":"allow_once"}`, protocol.MaxPermissionOptions+1) + `]}`, fmt.Sprintf(`events[0].options: has %d items; at most %d are allowed`, protocol.MaxPermissionOptions+1, protocol.MaxPermissionOptions), protocol.CodeInvalid},
		{"too many entries", `{"type":"plan_updated","entries":[` + repeatJoin(`{"content":"a","status":"pending"}`, protocol.MaxPlanEntries+1) + `]}`, fmt.Sprintf(`events[0].entries: has %d items; at most %d are allowed`, protocol.MaxPlanEntries+1, protocol.MaxPlanEntries), protocol.CodeInvalid},
		{"text over MaxTextLen", `[{"type":"heartbeat"},{"type":"text_delta","delta":"` + strings.Repeat("x", protocol.MaxTextLen+1) + `"}]`, fmt.Sprintf(`events[1].delta: is %d bytes; at most %d are allowed`, protocol.MaxTextLen+1, protocol.MaxTextLen), protocol.CodeInvalid},
		{"multibyte text over MaxTextLen", `{"type":"user_message","text":"` + strings.Repeat("é", protocol.MaxTextLen/2+1) + `"}`, fmt.Sprintf(`events[0].text: is %d bytes; at most %d are allowed`, protocol.MaxTextLen+2, protocol.MaxTextLen), protocol.CodeInvalid},
		{"event over MaxEventBytes", `[{"type":"heartbeat"},{"type":"heartbeat","pad":"` + strings.Repeat("x", protocol.MaxEventBytes) + `"}]`, fmt.Sprintf(`events[1]: event is %d bytes; at most %d are allowed`, protocol.MaxEventBytes+len(`{"type":"heartbeat","pad":""}`), protocol.MaxEventBytes), protocol.CodeTooLarge},
		{"batch over MaxBatchEvents", "[" + repeatJoin(`{"type":"heartbeat"}`, protocol.MaxBatchEvents+1) + "]", fmt.Sprintf(`batch has %d events; at most %d are allowed`, protocol.MaxBatchEvents+1, protocol.MaxBatchEvents), protocol.CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := protocol.DecodeEvents([]byte(tt.body))
			if got != nil {
				t.Errorf("events = %+v, want nil", got)
			}
			wantErr(t, err, tt.want, tt.code)
		})
	}
}

func repeatJoin(s string, n int) string {
	return strings.TrimSuffix(strings.Repeat(s+",", n), ",")
}

func TestDecodeEvents(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []protocol.Event
	}{
		{"one object", ` {"type":"text_delta","delta":"hi"} `, []protocol.Event{{Type: protocol.EventTextDelta, Delta: "hi"}}},
		{
			"array in order",
			"\n[{\"type\":\"turn_started\",\"turnId\":\"t1\",\"source\":\"user\",\"agentSeq\":7,\"ts\":100},\t{\"type\":\"text_delta\",\"id\":\"b:1\",\"delta\":\"a\",\"agentSeq\":8}]",
			[]protocol.Event{
				{Type: protocol.EventTurnStarted, TurnID: "t1", Source: protocol.SourceUser, AgentSeq: 7, Ts: 100},
				{Type: protocol.EventTextDelta, ID: "b:1", Delta: "a", AgentSeq: 8},
			},
		},
		{"receivedAt discarded", `{"type":"heartbeat","agentSeq":3,"receivedAt":1732190000000}`, []protocol.Event{{Type: protocol.EventHeartbeat, AgentSeq: 3}}},
		{"receivedAt discarded in batch", `[{"type":"heartbeat","receivedAt":1},{"type":"session_info","title":"t","receivedAt":2}]`, []protocol.Event{{Type: protocol.EventHeartbeat}, {Type: protocol.EventSessionInfo, Title: "t"}}},
		{"unknown fields ignored", `{"type":"text_delta","delta":"d","future":{"x":1}}`, []protocol.Event{{Type: protocol.EventTextDelta, Delta: "d"}}},
		// Fields of another type are not the type's and are not decoded.
		{"other type's fields dropped", `{"type":"heartbeat","id":"not an id!","status":"bogus","entries":5,"exitCode":"x"}`, []protocol.Event{{Type: protocol.EventHeartbeat}}},
		// encoding/json matches keys case-insensitively; only exact names count.
		{"case variant of type", `{"type":"heartbeat","Type":"bogus"}`, []protocol.Event{{Type: protocol.EventHeartbeat}}},
		{"case variant of id", `{"type":"tool_call_update","id":"c1","ID":"../../etc","Status":"awaiting_approval"}`, []protocol.Event{{Type: protocol.EventToolCallUpdate, ID: "c1"}}},
		{"case variant nested", `{"type":"plan_updated","entries":[{"content":"a","status":"pending","Status":"bogus"}]}`, []protocol.Event{{Type: protocol.EventPlanUpdated, Entries: []protocol.PlanEntry{{Content: "a", Status: protocol.PlanPending}}}}},
		{"case variant in agent", `{"type":"agent_started","agent":{"name":"a","protocol":"p","Name":""}}`, []protocol.Event{{Type: protocol.EventAgentStarted, Agent: &protocol.AgentInfo{Name: "a", Protocol: "p"}}}},
		{"null optional", `{"type":"tool_call_end","id":"c","status":"denied","result":null,"exitCode":null}`, []protocol.Event{{Type: protocol.EventToolCallEnd, ID: "c", Status: protocol.ToolDenied}}},
		{"raw compacted", `{"type":"tool_call_start","id":"c","name":"n","input":{ "a" : [1, 2] }}`, []protocol.Event{{Type: protocol.EventToolCallStart, ID: "c", Name: "n", Input: json.RawMessage(`{"a":[1,2]}`)}}},
		{"id charset", `{"type":"text_end","id":"Az09._:-"}`, []protocol.Event{{Type: protocol.EventTextEnd, ID: "Az09._:-"}}},
		{"id 128", `{"type":"text_end","id":"` + strings.Repeat("i", 128) + `"}`, []protocol.Event{{Type: protocol.EventTextEnd, ID: strings.Repeat("i", 128)}}},
		{"empty delta", `{"type":"text_delta","delta":""}`, []protocol.Event{{Type: protocol.EventTextDelta}}},
		{"empty plan", `{"type":"plan_updated","entries":[]}`, []protocol.Event{{Type: protocol.EventPlanUpdated, Entries: []protocol.PlanEntry{}}}},
		{"negative exit code", `{"type":"agent_exited","code":-1}`, []protocol.Event{{Type: protocol.EventAgentExited, ExitStatus: ptr(-1)}}},
		{"stop reason interrupted", `{"type":"turn_completed","turnId":"t1","stopReason":"interrupted","error":"agentd restarted"}`, []protocol.Event{{Type: protocol.EventTurnCompleted, TurnID: "t1", StopReason: protocol.StopInterrupted, Error: "agentd restarted"}}},
		{"cost integer", `{"type":"usage_updated","costUsd":2}`, []protocol.Event{{Type: protocol.EventUsageUpdated, CostUSD: ptr(2.0)}}},
		{"text at MaxTextLen", `{"type":"text_delta","delta":"` + strings.Repeat("x", protocol.MaxTextLen) + `"}`, []protocol.Event{{Type: protocol.EventTextDelta, Delta: strings.Repeat("x", protocol.MaxTextLen)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := protocol.DecodeEvents([]byte(tt.body))
			if err != nil {
				t.Fatalf("DecodeEvents: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodeEvents\n got: %+v\nwant: %+v", got, tt.want)
			}
		})
	}
}

// DecodeEventUnlimited takes what a sender can cut to the limits (a long
// text, a large event, a long plan) and refuses the rest as DecodeEvents
// does.
func TestDecodeEventUnlimited(t *testing.T) {
	long := strings.Repeat("x", protocol.MaxTextLen+1)
	huge := strings.Repeat("<", protocol.MaxEventBytes)
	entries := strings.TrimSuffix(strings.Repeat(`{"content":"a","status":"pending"},`, protocol.MaxPlanEntries+1), ",")
	for _, tc := range []struct {
		name, body string
		check      func(protocol.Event) bool
		wantErr    bool
	}{
		{"text over MaxTextLen", `{"type":"turn_completed","turnId":"t1","stopReason":"end_turn","resultText":"` + long + `"}`,
			func(ev protocol.Event) bool { return ev.ResultText == long && ev.TurnID == "t1" }, false},
		{"event over MaxEventBytes", `{"type":"tool_call_end","id":"c","status":"completed","output":"` + huge + `"}`,
			func(ev protocol.Event) bool { return ev.Output == huge }, false},
		{"agent name over MaxTextLen", `{"type":"agent_started","agent":{"name":"` + long + `","protocol":"p"}}`,
			func(ev protocol.Event) bool { return ev.Agent.Name == long }, false},
		{"plan over MaxPlanEntries", `{"type":"plan_updated","entries":[` + entries + `]}`,
			func(ev protocol.Event) bool { return len(ev.Entries) == protocol.MaxPlanEntries+1 }, false},
		{"id still bounded", `{"type":"text_end","id":"` + strings.Repeat("i", protocol.MaxIDLen+1) + `"}`, nil, true},
		{"enum still checked", `{"type":"turn_completed","stopReason":"` + long + `"}`, nil, true},
		{"required still checked", `{"type":"text_delta"}`, nil, true},
		{"an array", `[{"type":"heartbeat"}]`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := protocol.DecodeEventUnlimited([]byte(tc.body))
			if tc.wantErr {
				if err == nil || protocol.CodeOf(err) != protocol.CodeInvalid {
					t.Fatalf("DecodeEventUnlimited = %v, want an invalid error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeEventUnlimited: %v", err)
			}
			if !tc.check(ev) {
				t.Errorf("DecodeEventUnlimited decoded %.200v", ev)
			}
		})
	}
}

func TestDecodeEventsBatchAtLimit(t *testing.T) {
	body := "[" + repeatJoin(`{"type":"heartbeat"}`, protocol.MaxBatchEvents) + "]"
	got, err := protocol.DecodeEvents([]byte(body))
	if err != nil {
		t.Fatalf("DecodeEvents(%d events): %v", protocol.MaxBatchEvents, err)
	}
	if len(got) != protocol.MaxBatchEvents {
		t.Errorf("len = %d, want %d", len(got), protocol.MaxBatchEvents)
	}
}

func TestDecodeCommand(t *testing.T) {
	tests := []struct {
		name string
		body string
		want protocol.Command
	}{
		{"prompt", `{"type":"prompt","text":"fix the bug"}`, protocol.Command{Type: protocol.CommandPrompt, Text: "fix the bug"}},
		{"abort", `{"type":"abort"}`, protocol.Command{Type: protocol.CommandAbort}},
		{"queued prompt", `{"type":"prompt","text":"t","queue":true}`, protocol.Command{Type: protocol.CommandPrompt, Text: "t", Queue: true}},
		{"prompt queue false", `{"type":"prompt","text":"t","queue":false}`, protocol.Command{Type: protocol.CommandPrompt, Text: "t"}},
		{"prompt queue null", `{"type":"prompt","text":"t","queue":null}`, protocol.Command{Type: protocol.CommandPrompt, Text: "t"}},
		{"queue is a prompt's field only", `{"type":"abort","queue":true}`, protocol.Command{Type: protocol.CommandAbort}},
		{"option", `{"type":"permission_response","requestId":"r1","optionId":"allow_once"}`, protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "r1", OptionID: "allow_once", Outcome: protocol.OutcomeSelected}},
		{"option selected", `{"type":"permission_response","requestId":"r1","optionId":"o","outcome":"selected"}`, protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "r1", OptionID: "o", Outcome: protocol.OutcomeSelected}},
		{"cancelled", `{"type":"permission_response","requestId":"r1","outcome":"cancelled"}`, protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "r1", Outcome: protocol.OutcomeCancelled}},
		{"requestSeq", `{"type":"permission_response","requestId":"r1","optionId":"o","requestSeq":12}`, protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "r1", OptionID: "o", Outcome: protocol.OutcomeSelected, RequestSeq: 12}},
		{"requestSeq null", `{"type":"permission_response","requestId":"r1","outcome":"cancelled","requestSeq":null}`, protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "r1", Outcome: protocol.OutcomeCancelled}},
		{"the request's event is the server's to name", `{"type":"permission_response","requestId":"r1","optionId":"o","requestInstance":"agentd-1","requestAgentSeq":5}`, protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "r1", OptionID: "o", Outcome: protocol.OutcomeSelected}},
		{"requestSeq is a permission_response's field only", `{"type":"abort","requestSeq":3}`, protocol.Command{Type: protocol.CommandAbort}},
		{"client id ignored", `{"id":99,"type":"prompt","text":"t"}`, protocol.Command{Type: protocol.CommandPrompt, Text: "t"}},
		{"client id of any kind ignored", `{"id":"x","type":"abort"}`, protocol.Command{Type: protocol.CommandAbort}},
		{"other fields dropped", `{"type":"abort","text":"t","requestId":"r","outcome":"bogus"}`, protocol.Command{Type: protocol.CommandAbort}},
		{"case variant of type", `{"type":"prompt","text":"t","Type":"shutdown"}`, protocol.Command{Type: protocol.CommandPrompt, Text: "t"}},
		{"case variant of optionId", `{"type":"permission_response","requestId":"r1","optionId":"a","OptionID":"not valid"}`, protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "r1", OptionID: "a", Outcome: protocol.OutcomeSelected}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := protocol.DecodeCommand([]byte(tt.body))
			if err != nil {
				t.Fatalf("DecodeCommand(%s): %v", tt.body, err)
			}
			if got != tt.want {
				t.Errorf("DecodeCommand(%s)\n got: %+v\nwant: %+v", tt.body, got, tt.want)
			}
		})
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{"invalid JSON", `{"type":"prompt"`, `body is not a JSON object: invalid JSON at byte 16: unexpected end of JSON input`},
		{"array", `[{"type":"abort"}]`, `body is not a JSON object: found array`},
		{"null", `null`, `type: required`},
		{"invalid UTF-8", "{\"type\":\"prompt\",\"text\":\"\xc3\x28\"}", `body is not valid UTF-8: byte 0xc3 at offset 25`},
		{"missing type", `{"text":"t"}`, `type: required`},
		{"type number", `{"type":3}`, `type: must be a string`},
		{"unknown type", `{"type":"interrupt"}`, `type: unknown command type "interrupt" (want prompt, abort or permission_response)`},
		{"shutdown refused", `{"type":"shutdown"}`, `type: unknown command type "shutdown" (want prompt, abort or permission_response)`},
		{"prompt without text", `{"type":"prompt"}`, `text: required`},
		{"prompt null text", `{"type":"prompt","text":null}`, `text: required`},
		{"prompt empty text", `{"type":"prompt","text":""}`, `text: must not be empty`},
		{"prompt text number", `{"type":"prompt","text":1}`, `text: must be a string`},
		{"prompt queue string", `{"type":"prompt","text":"t","queue":"yes"}`, `queue: must be true or false`},
		{"prompt text too long", `{"type":"prompt","text":"` + strings.Repeat("p", protocol.MaxTextLen+1) + `"}`, fmt.Sprintf(`text: is %d bytes; at most %d are allowed`, protocol.MaxTextLen+1, protocol.MaxTextLen)},
		{"no requestId", `{"type":"permission_response","optionId":"a"}`, `requestId: required`},
		{"bad requestId", `{"type":"permission_response","requestId":"r 1","optionId":"a"}`, `requestId: may contain only letters, digits, '.', '_', ':' and '-' (found ' ')`},
		{"requestId number", `{"type":"permission_response","requestId":1,"optionId":"a"}`, `requestId: must be a string`},
		{"no optionId", `{"type":"permission_response","requestId":"r1"}`, `optionId: required unless outcome is cancelled`},
		{"selected without optionId", `{"type":"permission_response","requestId":"r1","outcome":"selected"}`, `optionId: required unless outcome is cancelled`},
		{"optionId and cancelled", `{"type":"permission_response","requestId":"r1","optionId":"a","outcome":"cancelled"}`, `optionId: must be absent when outcome is cancelled`},
		{"bad outcome", `{"type":"permission_response","requestId":"r1","outcome":"denied"}`, `outcome: must be one of [selected cancelled], not "denied"`},
		{"bad optionId", `{"type":"permission_response","requestId":"r1","optionId":""}`, `optionId: must not be empty`},
		{"requestSeq string", `{"type":"permission_response","requestId":"r1","optionId":"a","requestSeq":"3"}`, `requestSeq: must be an integer`},
		{"requestSeq fraction", `{"type":"permission_response","requestId":"r1","optionId":"a","requestSeq":3.5}`, `requestSeq: must be an integer`},
		{"requestSeq zero", `{"type":"permission_response","requestId":"r1","optionId":"a","requestSeq":0}`, `requestSeq: must be a positive integer: the seq of the permission artifact answered`},
		{"requestSeq negative", `{"type":"permission_response","requestId":"r1","optionId":"a","requestSeq":-2}`, `requestSeq: must be a positive integer: the seq of the permission artifact answered`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := protocol.DecodeCommand([]byte(tt.body))
			wantErr(t, err, tt.want, protocol.CodeInvalid)
			var fe *protocol.FieldError
			if errors.As(err, &fe) && fe.Index != -1 {
				t.Errorf("FieldError.Index = %d, want -1 for a command", fe.Index)
			}
		})
	}
}

// A free-form value may not hold a number beyond a 64-bit float: valid
// JSON, but no Go reader of the stored artifact takes it.
func TestDecodeRefusesOutOfRangeNumbers(t *testing.T) {
	for body, want := range map[string]string{
		`{"type":"tool_call_start","id":"c","name":"x","input":{"s":"1e999","a":[1e999]}}`:  "events[0].input: holds the number 1e999,",
		`{"type":"tool_call_end","id":"c","status":"failed","result":-1E+400}`:              "events[0].result: holds the number -1E+400,",
		`{"type":"agent_started","agent":{"name":"a","protocol":"p"},"capabilities":1e309}`: "events[0].capabilities: holds the number 1e309,",
		`{"type":"tool_call_update","id":"c","locations":[{"line":1},{"line":2e308}]}`:      "events[0].locations: holds the number 2e308,",
	} {
		_, err := protocol.DecodeEvents([]byte(body))
		if err == nil || !strings.Contains(err.Error(), want) || protocol.CodeOf(err) != protocol.CodeInvalid {
			t.Errorf("%s: %v; want invalid %q", body, err, want)
		}
	}
	// Strings, tiny numbers (they round to 0) and the largest float pass.
	if _, err := protocol.DecodeEvents([]byte(`{"type":"tool_call_start","id":"c","name":"x","input":{"s":"1e999","t":1e-400,"m":1.7976931348623157e308}}`)); err != nil {
		t.Fatal(err)
	}
}

// A free-form value may nest MaxValueDepth levels, not one more: the
// documents the server wraps it in must stay within encoding/json's limit.
func TestDecodeValueDepth(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	ok := `{"type":"tool_call_start","id":"c","name":"x","input":` + nest(protocol.MaxValueDepth) + `}`
	if _, err := protocol.DecodeEvents([]byte(ok)); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	deep := `{"type":"tool_call_end","id":"c","status":"failed","result":{"a":` + nest(protocol.MaxValueDepth) + `}}`
	_, err := protocol.DecodeEvents([]byte(deep))
	if want := "events[0].result: nests deeper than 9900 levels"; err == nil || err.Error() != want || protocol.CodeOf(err) != protocol.CodeInvalid {
		t.Fatalf("one level over: %v; want invalid %q", err, want)
	}
}
