package server

import (
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
)

// A released output restored from the store for a late change is
// rebased (written as a body without its text and the text as appends,
// writeRebase) a chunk of about 1 MiB at a time, as server/README.md's
// Memory section says: the reducer held a restored text as one chunk,
// and a restored 64 MB output went to the database as one append of
// 64 MB. (Found by a review with this test.)
func TestRestoredOutputRebasesInChunks(t *testing.T) {
	t.Parallel()
	s := reducer.New()
	s.Apply(protocol.Event{Type: protocol.EventToolCallStart, ID: "x", Name: "sh"})
	for range 48 {
		s.Apply(protocol.Event{Type: protocol.EventToolOutputDelta, ID: "x", Delta: strings.Repeat("y", 64<<10)})
	}
	s.Apply(protocol.Event{Type: protocol.EventToolCallEnd, ID: "x", Status: protocol.ToolCompleted})
	body, _, _ := s.ArtifactJSON(1)
	s.Release()
	late := protocol.Event{Type: protocol.EventToolCallEnd, ID: "x", Status: protocol.ToolFailed}
	if len(s.Needs(late)) != 1 {
		t.Fatal("the tool was not released")
	}
	if err := s.Restore(body); err != nil {
		t.Fatal(err)
	}
	s.Apply(late)
	biggest, total := 0, 0
	for _, a := range rebaseAppends(s.StreamedText(1), true) {
		biggest = max(biggest, len(a.Text))
		total += len(a.Text)
	}
	if total != 48*64<<10 {
		t.Fatalf("the rebase appends %d bytes; want the %d of the output", total, 48*64<<10)
	}
	if biggest > 2*wholeBodyMax {
		t.Errorf("the restored 3 MiB output is rebased with an append of %d bytes", biggest)
	}
}
