package store

import (
	"encoding/json"
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
