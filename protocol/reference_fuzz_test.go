package protocol

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// refDecode is DecodeEvents as the reference decoder does it.
func refDecode(body []byte) ([]Event, error) {
	if !utf8.Valid(body) {
		return nil, utf8Error(body)
	}
	return refDecodeEvents(bytes.TrimLeft(body, " \t\r\n"))
}

// seedEvents adds the event goldens, a batch of them all, and the cases
// the fast path used to give up on.
func seedEvents(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "events", "*.json"))
	var all [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		all = append(all, b)
	}
	f.Add(append(append([]byte("[ "), bytes.Join(all, []byte(" ,\n"))...), ']'))
	for _, s := range []string{
		`{"type":"text_delta","delta":"a\"b\\n\u00e9\ud800"}`,
		`{"type":"text_delta","delta":"x","delta":"y"}`,
		`{"type":"text_delta","Delta":"x","delta":"y"}`,
		`{"type":"text_delta","delta":"x","id":null}`,
		`{"type":"text_delta","delta":"x","agentSeq":-0}`,
		`{"type":"text_delta","delta":"x","agentSeq":1e2}`,
		`{"type":"text_delta","delta":"x","agentSeq":9223372036854775808}`,
		`{"type":"tool_call_start","id":"c","name":"x","input":{"a":["1e999",1e308,-1E+400]}}`,
		`{"type":"tool_call_update","id":"c","content":[1e-400,-0],"locations":[{"n":2e308}]}`,
		`{"type":"text_delta","delta":"x","ts":1.0,"receivedAt":5}`,
		`{"type":"text_\u0064elta","\u0064elta":"x"}`,
		`  {"type":"text_delta","delta":"x"}  `,
		`{"type":"text_delta","delta":"x"} x`,
		`[{"type":"text_delta","delta":"x"},{"type":"heartbeat"}]`,
		`[{"type":"text_delta","delta":"x"}{"type":"heartbeat"}]`,
		`[{"type":"text_delta","delta":"x"},]`,
		`[{"type":"text_delta","delta":5},{"type":"heartbeat"},x]`,
		` [1, null, "s", true, {"type":"heartbeat"}] `,
		`[]`,
		`{"type":"agent_exited","code":3}`,
		`{"type":"agent_exited","code":3.5}`,
		`{"type":"notice","level":"info","message":"m","code":"c"}`,
		`{"type":"usage_updated","costUsd":1e400}`,
		`{"type":"usage_updated","costUsd":-0.5e-3,"inputTokens":12}`,
		`{"type":"reasoning_end","redacted":true}`,
		`{"type":"tool_call_end","id":"t","status":"completed","exitCode":2}`,
		`{"type":"tool_call_start","id":"c","name":"n","input":{ "a" : ["<b>&", 2.50, {"":null}] }}`,
		`{"type":"agent_started","agent":{"name":"a","protocol":"p","Name":"","name":"b"},"capabilities":[]}`,
		`{"type":"plan_updated","entries":[{"content":"a","status":"pending"},null]}`,
		`{"type":"permission_requested","id":"q","title":"t","options":[{"id":"a","name":"A","kind":"allow_once"}],"input":"\u003c"}`,
		`{"type":"heartbeat","x":[[[[[[]]]]]],"y":{"z":[1,{"w":"\ud83d\ude00"}]}}`,
		`{"type":"heartbeat","x":"\u12"}`,
		`{"type":"heartbeat","x":"\x"}`,
		`{"type":"heartbeat","x":tru}`,
		`{"type":"heartbeat","x":01}`,
		`{"type":"heartbeat","x":-}`,
		`{"type":"heartbeat","x":1.}`,
		`{"type":"heartbeat","x":1e}`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzDecodeReference holds the single pass to the reference decoder
// (encoding/json plus the schema table): for any body both accept or both
// refuse, with the same events or the same error; what they refuse as
// JSON encoding/json refuses too; and the raw bytes DecodeEventsRaw hands
// out, stamped, decode to the event with ReceivedAt set (what a restart
// folds).
func FuzzDecodeReference(f *testing.F) {
	seedEvents(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		got, raws, err := DecodeEventsRaw(body)
		want, wantErr := refDecode(body)
		switch {
		case err != nil && wantErr != nil:
			if err.Error() != wantErr.Error() || CodeOf(err) != CodeOf(wantErr) {
				t.Fatalf("errors differ on %q\n got: %v (%s)\nwant: %v (%s)", body, err, CodeOf(err), wantErr, CodeOf(wantErr))
			}
			return
		case err != nil:
			t.Fatalf("refused what the reference accepts (%v): %q", err, body)
		case wantErr != nil:
			t.Fatalf("accepted what the reference refuses (%v): %q", wantErr, body)
		}
		if !json.Valid(body) {
			t.Fatalf("accepted what encoding/json calls invalid: %q", body)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("events differ on %q\n got: %+v\nwant: %+v", body, got, want)
		}
		if len(raws) != len(got) {
			t.Fatalf("%d raws for %d events", len(raws), len(got))
		}
		for i, raw := range raws {
			if raw == nil {
				continue
			}
			var ev Event
			stamped := StampRaw(raw, 1732190000123)
			if err := json.Unmarshal(stamped, &ev); err != nil {
				t.Fatalf("events[%d]: stamped raw %q: %v", i, stamped, err)
			}
			w := want[i]
			w.ReceivedAt = 1732190000123
			if !reflect.DeepEqual(ev, w) {
				t.Fatalf("events[%d]: stamped raw %q decodes to\n%+v\nwant\n%+v", i, stamped, ev, w)
			}
		}
	})
}

// FuzzDecodeCommandReference: the same for commands.
func FuzzDecodeCommandReference(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "commands", "*.json"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{"type":"permission_response","requestId":"r1","optionId":"a","outcome":"cancelled"}`,
		`{"type":"prompt","text":"t","Type":"shutdown"}`,
		`{"type":"prompt","text":"t","id":7}`,
		`{"type":"prompt","text":" \n\u00a0"}`,
		`{"type":"permission_response","requestId":"r1","optionId":"a","requestSeq":0}`,
		` null `, `[{"type":"abort"}]`, `{"type":"abort"} x`, `"abort"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := DecodeCommand(body)
		want, wantErr := refDecodeCommand(body)
		switch {
		case err != nil && wantErr != nil:
			if err.Error() != wantErr.Error() {
				t.Fatalf("errors differ on %q\n got: %v\nwant: %v", body, err, wantErr)
			}
		case err != nil || wantErr != nil:
			t.Fatalf("on %q: got %v, reference %v", body, err, wantErr)
		case got != want:
			t.Fatalf("commands differ on %q\n got: %+v\nwant: %+v", body, got, want)
		}
	})
}

// TestNestingDepth: encoding/json's depth limit holds here too, at the
// same depth.
func TestNestingDepth(t *testing.T) {
	for _, depth := range []int{maxDepth - 1, maxDepth, maxDepth + 1} {
		// The event object is depth 1; x holds the rest.
		inner := strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1)
		body := []byte(`{"type":"heartbeat","x":` + inner + `}`)
		_, err := DecodeEvents(body)
		_, wantErr := refDecode(body)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Errorf("depth %d: got %v, reference %v", depth, err, wantErr)
		}
		if (err == nil) != json.Valid(body) {
			t.Errorf("depth %d: got %v, json.Valid %v", depth, err, json.Valid(body))
		}
		batch := append(append([]byte("["), body...), ']')
		_, err = DecodeEvents(batch)
		_, wantErr = refDecode(batch)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Errorf("depth %d in a batch: got %v, reference %v", depth+1, err, wantErr)
		}
	}
}

// TestValueDepthMatchesReference: the two decoders refuse a free-form
// value at the same depth, with the same words.
func TestValueDepthMatchesReference(t *testing.T) {
	for _, depth := range []int{MaxValueDepth, MaxValueDepth + 1} {
		inner := strings.Repeat(`{"a":[`, depth/2) + strings.Repeat(`]}`, depth/2)
		if depth%2 == 1 {
			inner = "[" + inner + "]"
		}
		body := []byte(`{"type":"tool_call_start","id":"c","name":"x","input":` + inner + `}`)
		_, err := DecodeEvents(body)
		_, wantErr := refDecode(body)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Errorf("depth %d: got %v, reference %v", depth, err, wantErr)
		}
		if (err == nil) != (depth <= MaxValueDepth) {
			t.Errorf("depth %d: %v", depth, err)
		}
	}
}
