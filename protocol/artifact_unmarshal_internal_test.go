package protocol

import (
	"encoding/json"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// unmarshalBoth decodes b with UnmarshalJSON and with the encoding/json
// reference, and fails unless both give the same artifact, or both an
// error with the same words.
func unmarshalBoth(t *testing.T, b []byte) {
	t.Helper()
	var got, want Artifact
	gotErr, wantErr := got.UnmarshalJSON(b), want.unmarshalArtifactSlow(b)
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
		t.Fatalf("UnmarshalJSON(%.200q): %v; encoding/json: %v", b, gotErr, wantErr)
	}
	if gotErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("UnmarshalJSON(%.200q)\n got  %#v\n want %#v", b, got, want)
	}
}

var unmarshalCases = []string{
	`{"seq":2,"id":"m","type":"assistant_text","turnId":"t1","createdAt":5,"rev":7,"text":"hi","status":"streaming","meta":{"k":[1,true,null]}}`,
	` { "seq" : -0 , "rev" : 9223372036854775807 , "id" : "\u0041\"\\\/\b\f\n\r\t" } `,
	`{"output":"a\nb \u2028 \ud83d\ude00 \ud83d \ude00 \ud83dx \udc00\ud800 é \u00e9 <&> \u003c","n":1.5e3,"z":null,"b":false}`,
	"{\"text\":\"bad \xff\xfe utf8 \xe2\x82 cut\",\"k\xff\":\"v\",\"t\":\"\\u00e9\xff\"}",
	`{"seq":1,"seq":2,"text":"a","text":{"x":[]}}`,
	`{"SEQ":3,"text":"x"}`, `{"ſeq":3}`, `{"Id":"a"}`, `{"turnid":"t"}`, `{"\u0073eq":4}`,
	`{"seq":1e3}`, `{"seq":1.0}`, `{"seq":"1"}`, `{"seq":null}`, `{"id":null}`, `{"id":5}`, `{"rev":99999999999999999999}`,
	`{"type":"tool_call","input":{"a":"<b>","b":[1,{"c":"\u0000"}]}}`,
	`{}`, ` {} `, `[]`, `null`, `"s"`, `1`, `{"a":}`, `{"a":1`, `{"a":1}x`, `{"a" 1}`, ``, `{"a":"\x"}`,
	`{"a":[` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `]}`,
}

// UnmarshalJSON decodes what encoding/json decodes, the same way: every
// escape, surrogates paired or lone, invalid UTF-8 in values and keys,
// duplicate keys, fixed keys in another case (encoding/json matches
// those too) or of another type, and what is not an object at all.
func TestArtifactUnmarshalIsEncodingJSON(t *testing.T) {
	for _, c := range unmarshalCases {
		unmarshalBoth(t, []byte(c))
	}
}

func FuzzArtifactUnmarshal(f *testing.F) {
	for _, c := range unmarshalCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		unmarshalBoth(t, b)
	})
}

// A big string field is decoded into one string of about its size:
// through encoding/json it was unescaped into a buffer, copied into the
// string, and the object read twice, 2 times the text and more.
func TestArtifactUnmarshalAllocatesTheTextOnce(t *testing.T) {
	text := strings.Repeat(strings.Repeat("x", 999)+"\n", 32<<10)
	b, err := json.Marshal(map[string]any{"seq": 2, "id": "x", "type": "tool_call", "rev": 9, "output": text})
	if err != nil {
		t.Fatal(err)
	}
	var a Artifact
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err = json.Unmarshal(b, &a)
	runtime.ReadMemStats(&after)
	if err != nil || a.String("output") != text || a.Rev != 9 {
		t.Fatalf("decoded %d bytes of output, rev %d, %v", len(a.String("output")), a.Rev, err)
	}
	if alloc := float64(after.TotalAlloc - before.TotalAlloc); alloc > 1.1*float64(len(b)) {
		t.Errorf("decoding a %d MiB artifact allocated %.2f times it", len(b)>>20, alloc/float64(len(b)))
	}
}
