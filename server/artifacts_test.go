package server

import (
	"testing"

	"github.com/rein-ai/rein/reducer"
)

// The storage policy: append only to an artifact whose full body this
// process wrote, only for appends, only valid UTF-8, and only while the
// pending appends stay within the body's size.
func TestArtifactPolicyAppendable(t *testing.T) {
	appended := func(texts ...string) *dirtyArtifact {
		d := &dirtyArtifact{utf8: true}
		for i, s := range texts {
			d.add(reducer.Change{Kind: reducer.Appended, Seq: 1, Rev: int64(i + 2), Field: "output", Append: s})
		}
		return d
	}
	set := appended("x")
	set.add(reducer.Change{Kind: reducer.Set, Seq: 1, Rev: 9, Field: "status"})
	tests := []struct {
		name   string
		stored map[int64]storedArtifact
		d      *dirtyArtifact
		want   bool
	}{
		{"not written by this process (folded from the log)", nil, appended("x"), false},
		{"appends within the body", map[int64]storedArtifact{1: {body: 100}}, appended("abc", "def"), true},
		{"appends exactly filling the body", map[int64]storedArtifact{1: {body: 10, appended: 4}}, appended("123456"), true},
		{"appends outgrowing the body", map[int64]storedArtifact{1: {body: 10, appended: 4}}, appended("1234567"), false},
		{"a set in the same group", map[int64]storedArtifact{1: {body: 100}}, set, false},
		{"invalid UTF-8", map[int64]storedArtifact{1: {body: 100}}, appended("\xff"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newArtifactPolicy()
			for k, v := range tt.stored {
				p.stored[k] = v
			}
			if got := p.appendable(1, tt.d); got != tt.want {
				t.Errorf("appendable = %v; want %v", got, tt.want)
			}
		})
	}
}
