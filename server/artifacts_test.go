package server

import (
	"strings"
	"testing"

	"github.com/rein-ai/rein/reducer"
)

// The storage policy: append only to an artifact whose stored body this
// process wrote, only valid UTF-8, and only while the pending appends
// stay within the body's size or the artifact is past wholeBodyMax; a set
// of a field that is not streamed text writes the head of an artifact
// past wholeBodyMax and the whole of a smaller one; creating it or
// setting streamed text writes it whole, split from the text appended
// since when that is past wholeBodyMax.
func TestArtifactPolicyHow(t *testing.T) {
	t.Parallel()
	appended := func(texts ...string) *dirtyArtifact {
		d := &dirtyArtifact{utf8: true}
		for i, s := range texts {
			d.add(reducer.Change{Kind: reducer.Appended, Seq: 1, Rev: int64(i + 2), Field: "output", Append: s})
		}
		return d
	}
	withSet := func(field string) *dirtyArtifact {
		d := appended("x")
		d.add(reducer.Change{Kind: reducer.Set, Seq: 1, Rev: 9, Field: field})
		return d
	}
	createdThen := func(texts ...string) *dirtyArtifact {
		d := appended("before")
		d.add(reducer.Change{Kind: reducer.Created, Seq: 1, Rev: 10})
		for _, s := range texts {
			d.add(reducer.Change{Kind: reducer.Appended, Seq: 1, Rev: 11, Field: "output", Append: s})
		}
		return d
	}
	created := createdThen()
	big := map[int64]storedArtifact{1: {body: 512 << 10, appended: 512 << 10}}
	tests := []struct {
		name   string
		stored map[int64]storedArtifact
		d      *dirtyArtifact
		want   write
	}{
		{"not written by this process (folded from the log)", nil, appended("x"), writeWhole},
		{"not written by this process, appends past wholeBodyMax", nil, appended(strings.Repeat("x", wholeBodyMax+1)), writeSplit},
		{"created, appends past wholeBodyMax", nil, createdThen(strings.Repeat("x", wholeBodyMax+1)), writeSplit},
		{"created, appends up to wholeBodyMax", nil, createdThen(strings.Repeat("x", wholeBodyMax)), writeWhole},
		{"appends within the body", map[int64]storedArtifact{1: {body: 100}}, appended("abc", "def"), writeAppend},
		{"appends exactly filling the body", map[int64]storedArtifact{1: {body: 10, appended: 4}}, appended("123456"), writeAppend},
		{"appends outgrowing the body", map[int64]storedArtifact{1: {body: 10, appended: 4}}, appended("1234567"), writeWhole},
		{"appends outgrowing the body past wholeBodyMax", big, appended("1"), writeAppend},
		{"a set in the same group", map[int64]storedArtifact{1: {body: 100}}, withSet("status"), writeWhole},
		{"a set past wholeBodyMax", big, withSet("status"), writeHead},
		{"a set of streamed text past wholeBodyMax", big, withSet("output"), writeWhole},
		{"created past wholeBodyMax", big, created, writeWhole},
		{"invalid UTF-8", map[int64]storedArtifact{1: {body: 100}}, appended("\xff"), writeWhole},
		{"invalid UTF-8 past wholeBodyMax", big, appended("\xff"), writeWhole},
		{"invalid UTF-8 appended past wholeBodyMax", nil, appended(strings.Repeat("x", wholeBodyMax), "\xff"), writeWhole},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newArtifactPolicy()
			for k, v := range tt.stored {
				p.stored[k] = v
			}
			if got := p.how(1, tt.d); got != tt.want {
				t.Errorf("how = %v; want %v", got, tt.want)
			}
		})
	}
}

// A big artifact the policy does not know is rewritten as appends of its
// chunks, fields in name order, only when the store can hold them so.
func TestRebaseAppends(t *testing.T) {
	t.Parallel()
	big := []byte(strings.Repeat("x", wholeBodyMax))
	text := map[string][][]byte{"output": {big, []byte("é\n")}, "inputText": {[]byte("{}")}}
	got := rebaseAppends(text, false)
	if len(got) != 3 || got[0].Field != "inputText" || got[1].Text != string(big) || got[2].Text != "é\n" {
		t.Fatalf("rebaseAppends = %d appends, first %q", len(got), got[0].Field)
	}
	for name, text := range map[string]map[string][][]byte{
		"small":        {"output": {[]byte("x")}},
		"invalid":      {"output": {big, []byte("\xff")}},
		"NUL, refused": {"output": {big, []byte("\x00")}},
	} {
		if got := rebaseAppends(text, false); got != nil {
			t.Errorf("%s: %d appends; want none", name, len(got))
		}
	}
	if got := rebaseAppends(map[string][][]byte{"output": {big, []byte("\x00")}}, true); len(got) != 2 {
		t.Errorf("NUL where the store takes it: %d appends; want 2", len(got))
	}
}
