package protocol

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"
)

// TestFlatFields: every key the flat path may take has a place in Event,
// or the flat path would never apply to its events.
func TestFlatFields(t *testing.T) {
	for typ, keys := range flatKeys {
		for k := range keys {
			if _, ok := flatFields[k]; !ok && k != "code" {
				t.Errorf("%s: flat key %q is not a field of Event", typ, k)
			}
		}
	}
}

// FuzzDecodeFast: whatever the fast path accepts, the checked path accepts
// too and decodes to the same events; and the raw bytes it hands out,
// stamped, decode to the event with ReceivedAt set (what a restart folds).
func FuzzDecodeFast(f *testing.F) {
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
		`{"type":"text_delta","delta":"x","ts":1.0,"receivedAt":5}`,
		`  {"type":"text_delta","delta":"x"}  `,
		`{"type":"text_delta","delta":"x"} x`,
		`[{"type":"text_delta","delta":"x"},{"type":"heartbeat"}]`,
		`[{"type":"text_delta","delta":"x"}{"type":"heartbeat"}]`,
		`[{"type":"text_delta","delta":"x"},]`,
		`[]`,
		`{"type":"agent_exited","code":3}`,
		`{"type":"agent_exited","code":3.5}`,
		`{"type":"notice","level":"info","message":"m","code":"c"}`,
		`{"type":"usage_updated","costUsd":1e400}`,
		`{"type":"usage_updated","costUsd":-0.5e-3,"inputTokens":12}`,
		`{"type":"reasoning_end","redacted":true}`,
		`{"type":"tool_call_end","id":"t","status":"completed","exitCode":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !utf8.Valid(body) {
			return // DecodeEvents refuses it before either path
		}
		trimmed := bytes.TrimLeft(body, " \t\r\n")
		fast, raws, ok := decodeFast(trimmed, true)
		if !ok {
			return
		}
		checked, err := decodeChecked(trimmed)
		if err != nil {
			t.Fatalf("fast path accepted what the checked path refuses (%v): %q", err, body)
		}
		if !reflect.DeepEqual(fast, checked) {
			t.Fatalf("paths disagree on %q\nfast:    %+v\nchecked: %+v", body, fast, checked)
		}
		for i, raw := range raws {
			if raw == nil {
				continue
			}
			var ev Event
			if err := json.Unmarshal(StampRaw(raw, 1732190000123), &ev); err != nil {
				t.Fatalf("events[%d]: stamped raw %q: %v", i, StampRaw(raw, 1732190000123), err)
			}
			want := checked[i]
			want.ReceivedAt = 1732190000123
			if !reflect.DeepEqual(ev, want) {
				t.Fatalf("events[%d]: stamped raw decodes to\n%+v\nwant\n%+v", i, ev, want)
			}
		}
	})
}
