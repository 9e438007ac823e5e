package store

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// MergeAppends gives byte for byte what MarshalJSON gives for the grown
// artifact, whatever the text needs escaped and wherever the field sorts.
func TestMergeAppends(t *testing.T) {
	base := protocol.Artifact{Seq: 3, ID: "x", Type: protocol.ArtifactToolCall, TurnID: "t1", CreatedAt: 7, Rev: 10, Fields: map[string]any{
		"status": json.RawMessage(`"running"`),
		"input":  json.RawMessage(`{"a":[1,2.5],"b":"<c>"}`),
		"output": "already \"here\"\n",
	}}
	tests := []struct {
		name    string
		appends []FieldAppend
	}{
		{"none", nil},
		{"one", []FieldAppend{{"output", "more\n"}}},
		{"escapes", []FieldAppend{{"output", "<a href=\"x\">&</a>\t\\ \x00\x1f \u2028\u2029"}}},
		{"runes", []FieldAppend{{"output", "héllo "}, {"output", "✓ 🙂"}}},
		{"new field", []FieldAppend{{"inputText", "{\"cmd\":"}, {"output", "o"}, {"inputText", "\"make\"}"}}},
		{"empty text", []FieldAppend{{"output", ""}, {"text", ""}}},
		{"sorts first and last", []FieldAppend{{"aaa", "first"}, {"zzz", "last"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := json.Marshal(base)
			if err != nil {
				t.Fatal(err)
			}
			want := base.Clone()
			want.Rev = 42
			for _, a := range tt.appends {
				if a.Text == "" {
					continue
				}
				s, _ := want.Fields[a.Field].(string)
				want.Fields[a.Field] = s + a.Text
			}
			wantBody, err := json.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := MergeAppends(body, 42, tt.appends)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(wantBody) {
				t.Fatalf("MergeAppends\ngot  %s\nwant %s", got, wantBody)
			}
		})
	}
}

func TestMergeAppendsRejectsNonString(t *testing.T) {
	if _, err := MergeAppends([]byte(`{"output":null,"rev":1}`), 2, []FieldAppend{{"output", "x"}}); err == nil {
		t.Fatal("appending to null succeeded")
	}
	if _, err := MergeAppends([]byte(`{"rev":`), 2, nil); err == nil {
		t.Fatal("a broken body merged")
	}
}

// A big merge writes its body once, at its size: each append encoded on
// its own, and the field grown by appending, allocated 7.5 times the
// body (490 MB for a 64 MB tool output).
func TestMergeAppendsAllocatesTheBody(t *testing.T) {
	line := strings.Repeat("x<", 500) + "\n"
	body, err := json.Marshal(protocol.Artifact{Seq: 2, ID: "x", Type: protocol.ArtifactToolCall, Fields: map[string]any{"output": strings.Repeat(line, 1000)}})
	if err != nil {
		t.Fatal(err)
	}
	var appends []FieldAppend
	for range 80 {
		appends = append(appends, FieldAppend{Field: "output", Text: strings.Repeat(line, 100)})
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	out, err := MergeAppends(body, 9, appends)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(len(out))+uint64(len(body))+64<<10 {
		t.Errorf("merging into a body of %d KiB allocated %d KiB; want the body and its decoded copy", len(out)>>10, alloc>>10)
	}
}
