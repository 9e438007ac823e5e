package protocol_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rein-ai/rein/protocol"
)

func TestArtifactMarshalFlattens(t *testing.T) {
	a := protocol.Artifact{
		Seq: 4, ID: "toolu_01", Type: protocol.ArtifactToolCall, TurnID: "t1", CreatedAt: 1000, Rev: 9,
		Fields: map[string]any{
			"status": "running", "exitCode": 0, "input": json.RawMessage(`{"a":1}`),
			// A field named like a fixed key never overrides it.
			"seq": 99, "type": "bogus",
		},
	}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"createdAt":1000,"exitCode":0,"id":"toolu_01","input":{"a":1},"rev":9,"seq":4,"status":"running","turnId":"t1","type":"tool_call"}`
	if string(b) != want {
		t.Errorf("Marshal = %s\nwant      %s", b, want)
	}
	// No turn: turnId omitted; nil Fields fine.
	b, err = json.Marshal(&protocol.Artifact{Seq: 1, ID: "n", Type: protocol.ArtifactNotice})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"createdAt":0,"id":"n","rev":0,"seq":1,"type":"notice"}`; string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
}

// marshalReference is how an artifact was encoded before
// MarshalJSONWith: its fields, texts as strings over them, and the fixed
// keys in one map, through json.Marshal.
func marshalReference(a protocol.Artifact, texts map[string][]byte) ([]byte, error) {
	m := map[string]any{}
	for k, v := range a.Fields {
		m[k] = v
	}
	for k, b := range texts {
		m[k] = string(b)
	}
	m["seq"], m["id"], m["type"], m["createdAt"], m["rev"] = a.Seq, a.ID, a.Type, a.CreatedAt, a.Rev
	delete(m, "turnId")
	if a.TurnID != "" {
		m["turnId"] = a.TurnID
	}
	return json.Marshal(m)
}

// checkArtifactJSON holds MarshalJSONWith(texts) (and MarshalJSON when
// texts is nil) to the reference's bytes, and the body to the size it
// was made with: a body grown while it was written held a second copy.
func checkArtifactJSON(t *testing.T, a protocol.Artifact, texts map[string][]byte) {
	t.Helper()
	want, werr := marshalReference(a, texts)
	got, err := a.MarshalJSONWith(texts)
	if (err != nil) != (werr != nil) {
		t.Fatalf("MarshalJSONWith error %v, json.Marshal error %v", err, werr)
	}
	if err != nil {
		return
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("MarshalJSONWith = %s\njson.Marshal     %s", got, want)
	}
	if cap(got) != len(got) {
		t.Errorf("body of %d bytes made with room for %d", len(got), cap(got))
	}
	if texts == nil {
		if again, err := a.MarshalJSON(); err != nil || !bytes.Equal(again, want) {
			t.Fatalf("MarshalJSON = %s, %v\nwant %s", again, err, want)
		}
		if viaJSON, err := json.Marshal(&a); err != nil || !bytes.Equal(viaJSON, want) {
			t.Fatalf("json.Marshal(&a) = %s, %v\nwant %s", viaJSON, err, want)
		}
	}
}

// MarshalJSON and MarshalJSONWith return what json.Marshal gave for the
// artifact as one map, byte for byte: bodies stored before and after the
// encoder must not differ by which wrote them. HTML characters, invalid
// UTF-8, U+2028, control characters, keys that need escaping and raw
// JSON with spaces are where an encoder could differ.
func TestArtifactJSONIsJSONMarshal(t *testing.T) {
	tricky := "<b>&amp;</b> \xff\xfe bad \u2028 line \u2029 \x00 nul \x7f \x1f \b\f\r\t\n \"q\" \\ é 😀 \xe2\x82 cut"
	tool := protocol.Artifact{Seq: 4, ID: "toolu_01", Type: protocol.ArtifactToolCall, TurnID: "t1", CreatedAt: 1000, Rev: 9, Fields: map[string]any{
		"output": tricky,
		"input":  json.RawMessage(`{ "a" : [1, 2], "b": "<x>\u2028" }`),
		"nested": map[string]any{"k": []any{1.5, true, nil, "é"}},
		"status": protocol.TurnRunning, // a named string type
		"<key>":  "a key that needs escaping",
		"seq":    "a fixed key among the fields: the fixed value wins",
		"gone":   nil,
	}}
	for _, tc := range []struct {
		name  string
		a     protocol.Artifact
		texts map[string][]byte
	}{
		{"bare", protocol.Artifact{Seq: 1, ID: "n", Type: protocol.ArtifactNotice}, nil},
		{"fields", tool, nil},
		{"texts over fields", tool, map[string][]byte{"output": []byte(tricky + tricky), "text": nil, "id": []byte("a fixed key: ignored")}},
		{"texts only", protocol.Artifact{Seq: 2, ID: "m", Type: protocol.ArtifactAssistantText, TurnID: "t", Rev: 3}, map[string][]byte{"text": []byte(strings.Repeat("x<", 5000))}},
		{"bad raw", protocol.Artifact{Seq: 3, ID: "x", Type: protocol.ArtifactPlan, Fields: map[string]any{"entries": json.RawMessage(`{"a":`)}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkArtifactJSON(t, tc.a, tc.texts)
			for k, b := range tc.texts {
				checkChunks(t, tc.a, k, b)
				checkJSONText(t, string(b))
			}
		})
	}
}

// FuzzArtifactJSON: any text, key and set value encode as json.Marshal
// encodes them.
func FuzzArtifactJSON(f *testing.F) {
	f.Add("output", []byte("plain"), "x", []byte(`{"a":1}`))
	f.Add("te<xt", []byte("\xff\u2028<&>\x00\\\""), "\u2029", []byte(` [ 1 , "<" ] `))
	f.Add("", []byte{0xe2, 0x80}, "rev", []byte(`"s"`))
	f.Fuzz(func(t *testing.T, field string, text []byte, id string, raw []byte) {
		a := protocol.Artifact{Seq: 7, ID: id, Type: protocol.ArtifactToolCall, TurnID: id, CreatedAt: -1, Rev: 1 << 40, Fields: map[string]any{
			"set":  json.RawMessage(raw),
			"str":  string(text),
			field:  string(raw),
			"next": "after",
		}}
		checkArtifactJSON(t, a, nil)
		checkArtifactJSON(t, a, map[string][]byte{field: text, "more": raw})
		checkChunks(t, a, field, text)
		checkJSONText(t, string(text))
		checkHTMLSafe(t, text)
		checkHTMLSafe(t, raw)
	})
}

// checkHTMLSafe holds HTMLSafe to json.HTMLEscape.
func checkHTMLSafe(t *testing.T, b []byte) {
	t.Helper()
	var esc bytes.Buffer
	json.HTMLEscape(&esc, b)
	if got, want := protocol.HTMLSafe(b), bytes.Equal(esc.Bytes(), b); got != want {
		t.Fatalf("HTMLSafe(%q) = %v; json.HTMLEscape leaves it as it is: %v", b, got, want)
	}
}

// HTMLSafe says whether json.HTMLEscape leaves text as it is.
func TestHTMLSafe(t *testing.T) {
	for _, s := range []string{"", `{"a":"b c"}`, "<", ">", "&", "x\u003c", "\u2028", " ", " ", "â", "â§", "é€😀"} {
		checkHTMLSafe(t, []byte(s))
	}
}

// checkJSONText holds AppendJSONText and JSONTextLen to json.Marshal.
func checkJSONText(t *testing.T, s string) {
	t.Helper()
	quoted, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	want := quoted[1 : len(quoted)-1]
	if got := protocol.AppendJSONText([]byte("x"), s); string(got) != "x"+string(want) || protocol.JSONTextLen(s) != len(want) {
		t.Fatalf("AppendJSONText(%q) = %s (JSONTextLen %d); json.Marshal has %s", s, got, protocol.JSONTextLen(s), want)
	}
}

// checkChunks holds MarshalJSONChunks of text cut into chunks, wherever a
// rune ends (as the reducer cuts), to MarshalJSONWith of it whole.
func checkChunks(t *testing.T, a protocol.Artifact, field string, text []byte) {
	t.Helper()
	var chunks [][]byte
	start := 0
	for i := 1; i < len(text); i++ {
		if r, size := utf8.DecodeLastRune(text[start:i]); i-start >= 2 && (r != utf8.RuneError || size > 1) {
			chunks = append(chunks, text[start:i])
			start = i
		}
	}
	chunks = append(chunks, text[start:])
	want, werr := a.MarshalJSONWith(map[string][]byte{field: text})
	got, err := a.MarshalJSONChunks(map[string][][]byte{field: chunks})
	if (err != nil) != (werr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("MarshalJSONChunks of %q in %d chunks = %s, %v\nMarshalJSONWith = %s, %v", text, len(chunks), got, err, want, werr)
	}
	if err == nil && cap(got) != len(got) {
		t.Errorf("body of %d bytes made with room for %d", len(got), cap(got))
	}
}

func TestArtifactUnmarshalSplits(t *testing.T) {
	var a protocol.Artifact
	err := json.Unmarshal([]byte(`{"seq":2,"id":"m","type":"assistant_text","turnId":"t1","createdAt":5,"rev":7,"text":"hi","status":"streaming","meta":{"k":[1,true,null]}}`), &a)
	if err != nil {
		t.Fatal(err)
	}
	want := protocol.Artifact{
		Seq: 2, ID: "m", Type: protocol.ArtifactAssistantText, TurnID: "t1", CreatedAt: 5, Rev: 7,
		Fields: map[string]any{"text": "hi", "status": "streaming", "meta": map[string]any{"k": []any{1.0, true, nil}}},
	}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("Unmarshal\n got: %+v\nwant: %+v", a, want)
	}
	if a.String("text") != "hi" || a.String("meta") != "" || a.String("absent") != "" {
		t.Errorf("String: text=%q meta=%q absent=%q", a.String("text"), a.String("meta"), a.String("absent"))
	}
	// Unmarshal replaces what was there.
	if err := json.Unmarshal([]byte(`{"seq":3,"id":"x","type":"plan","createdAt":1,"rev":1}`), &a); err != nil {
		t.Fatal(err)
	}
	if a.TurnID != "" || len(a.Fields) != 0 || a.Seq != 3 {
		t.Errorf("second Unmarshal kept old state: %+v", a)
	}
	for _, bad := range []string{`[]`, `{"seq":"1"}`, `{"rev":1.5}`, `{`} {
		if err := json.Unmarshal([]byte(bad), &a); err == nil {
			t.Errorf("Unmarshal(%s) = nil, want an error", bad)
		}
	}
}

func TestArtifactStringRaw(t *testing.T) {
	a := protocol.Artifact{Fields: map[string]any{"s": json.RawMessage(`"raw"`), "n": json.RawMessage(`1`), "i": 3}}
	if a.String("s") != "raw" || a.String("n") != "" || a.String("i") != "" {
		t.Errorf("String: s=%q n=%q i=%q", a.String("s"), a.String("n"), a.String("i"))
	}
}

func TestArtifactClone(t *testing.T) {
	a := &protocol.Artifact{Seq: 1, ID: "a", Fields: map[string]any{"text": "x"}}
	c := a.Clone()
	c.Fields["text"] = "y"
	c.Fields["new"] = true
	c.Rev = 5
	if a.Fields["text"] != "x" || len(a.Fields) != 1 || a.Rev != 0 {
		t.Errorf("Clone shares state with the original: %+v", a)
	}
	if c.Seq != 1 || c.ID != "a" {
		t.Errorf("Clone = %+v", c)
	}
}

func TestArtifactUpdateApply(t *testing.T) {
	base := func() *protocol.Artifact {
		return &protocol.Artifact{Seq: 3, ID: "b", Type: protocol.ArtifactAssistantText, Rev: 4,
			Fields: map[string]any{"text": "Hello", "status": "streaming", "raw": json.RawMessage(`"ab"`)}}
	}
	tests := []struct {
		name    string
		a       *protocol.Artifact
		update  string
		rev     int64
		want    map[string]any
		wantErr bool
	}{
		{"append", base(), `{"seq":3,"field":"text","append":", world"}`, 5, map[string]any{"text": "Hello, world", "status": "streaming", "raw": json.RawMessage(`"ab"`)}, false},
		{"append to absent field", base(), `{"seq":3,"field":"output","append":"x"}`, 6, map[string]any{"text": "Hello", "status": "streaming", "raw": json.RawMessage(`"ab"`), "output": "x"}, false},
		{"append to raw string", base(), `{"seq":3,"field":"raw","append":"c"}`, 6, map[string]any{"text": "Hello", "status": "streaming", "raw": "abc"}, false},
		{"append empty", base(), `{"seq":3,"field":"text","append":""}`, 6, map[string]any{"text": "Hello", "status": "streaming", "raw": json.RawMessage(`"ab"`)}, false},
		{"append to nil Fields", &protocol.Artifact{Seq: 1}, `{"seq":1,"field":"text","append":"a"}`, 2, map[string]any{"text": "a"}, false},
		{"set replaces", base(), `{"seq":3,"field":"text","set":"Bye"}`, 7, map[string]any{"text": "Bye", "status": "streaming", "raw": json.RawMessage(`"ab"`)}, false},
		{"set object", base(), `{"seq":3,"field":"usage","set":{"inputTokens":3}}`, 7, map[string]any{"text": "Hello", "status": "streaming", "raw": json.RawMessage(`"ab"`), "usage": map[string]any{"inputTokens": 3.0}}, false},
		{"set null", base(), `{"seq":3,"field":"status","set":null}`, 7, map[string]any{"text": "Hello", "status": nil, "raw": json.RawMessage(`"ab"`)}, false},
		{"neither append nor set", base(), `{"seq":3,"field":"text"}`, 8, map[string]any{"text": "Hello", "status": "streaming", "raw": json.RawMessage(`"ab"`)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var u protocol.ArtifactUpdate
			if err := json.Unmarshal([]byte(tt.update), &u); err != nil {
				t.Fatal(err)
			}
			before := tt.a.Rev
			err := u.Apply(tt.a, tt.rev)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Apply err = %v, wantErr %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(tt.a.Fields, tt.want) {
				t.Errorf("Fields = %#v\nwant     %#v", tt.a.Fields, tt.want)
			}
			wantRev := tt.rev
			if tt.wantErr {
				wantRev = before // a failed update changes nothing
			}
			if tt.a.Rev != wantRev {
				t.Errorf("Rev = %d, want %d", tt.a.Rev, wantRev)
			}
		})
	}
}

// TestArtifactUpdateWire: the two shapes of artifact_updated, and a set to
// null survives the round trip (it is not the absent "set").
func TestArtifactUpdateWire(t *testing.T) {
	tests := []struct {
		u    protocol.ArtifactUpdate
		want string
	}{
		{protocol.ArtifactUpdate{Seq: 1, Field: "text", Append: ptr("")}, `{"seq":1,"field":"text","append":""}`},
		{protocol.ArtifactUpdate{Seq: 1, Field: "status", Set: raw(`"done"`)}, `{"seq":1,"field":"status","set":"done"}`},
		{protocol.ArtifactUpdate{Seq: 1, Field: "error", Set: raw(`null`)}, `{"seq":1,"field":"error","set":null}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.u)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.want {
			t.Errorf("Marshal = %s, want %s", b, tt.want)
		}
		var back protocol.ArtifactUpdate
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, tt.u) {
			t.Errorf("round trip = %+v, want %+v", back, tt.u)
		}
	}
}

// TestArtifactRoundTrip: decode -> encode is byte-identical for an artifact
// whose fields were built by Apply.
func TestArtifactRoundTrip(t *testing.T) {
	a := &protocol.Artifact{Seq: 2, ID: "c", Type: protocol.ArtifactToolCall, CreatedAt: 10, Rev: 1, Fields: map[string]any{}}
	for i, u := range []string{
		`{"seq":2,"field":"inputText","append":"{\"a\""}`,
		`{"seq":2,"field":"inputText","append":":1}"}`,
		`{"seq":2,"field":"input","set":{"a":1}}`,
		`{"seq":2,"field":"status","set":"completed"}`,
	} {
		var up protocol.ArtifactUpdate
		if err := json.Unmarshal([]byte(u), &up); err != nil {
			t.Fatal(err)
		}
		if err := up.Apply(a, int64(i+2)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"createdAt":10,"id":"c","input":{"a":1},"inputText":"{\"a\":1}","rev":5,"seq":2,"status":"completed","type":"tool_call"}`
	if string(b) != want {
		t.Errorf("Marshal = %s\nwant      %s", b, want)
	}
	var back protocol.Artifact
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(&back)
	if string(b2) != string(b) {
		t.Errorf("re-encoded = %s, want %s", b2, b)
	}
}
