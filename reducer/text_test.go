package reducer

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rein-ai/rein/protocol"
)

// A text grows in chunks that end where a rune ends, reads back as what
// was appended, compares and trims by bytes; a delta that would end a
// chunk inside a rune grows the chunk instead.
func TestTextChunks(t *testing.T) {
	var want strings.Builder
	tx := newText("")
	line := strings.Repeat("é€😀<x>\n", 4096) // multi-byte runes, 64 KiB or so
	k := chunkBytes / len(line)              // the deltas that fill the first chunk
	for i := range 40 {
		d := line
		switch i {
		case k - 1:
			d = line[:len(line)-2] + "\xe2\x82" // ends inside a rune (only Go callers can)
		case k:
			d = "\xac" + line // the rune's end, where a chunk would start
		}
		tx.append(d)
		want.WriteString(d)
	}
	w := want.String()
	if tx.n != len(w) || tx.String() != w || !tx.equal(w) || tx.equal(w[:len(w)-1]+"x") || tx.equal(w+"x") {
		t.Fatalf("text of %d bytes in %d chunks does not read back as the %d appended", tx.n, len(tx.chunks), len(w))
	}
	if len(tx.chunks) < 2 {
		t.Fatalf("%d bytes in %d chunks; want several", tx.n, len(tx.chunks))
	}
	for i, c := range tx.chunks[:len(tx.chunks)-1] {
		if !endsRune(c) {
			t.Fatalf("chunk %d ends inside a rune: % x", i, c[len(c)-3:])
		}
		if len(c) > chunkBytes+len(line)+3 {
			t.Errorf("chunk %d holds %d bytes", i, len(c))
		}
	}
	for _, cut := range []int{0, 1, len(line), chunkBytes, tx.n - 1, tx.n} {
		if got := bytes.Join(tx.trimmed(cut), nil); string(got) != w[:len(w)-cut] {
			t.Fatalf("trimmed(%d) is %d bytes, want %d", cut, len(got), len(w)-cut)
		}
	}
	if got := tx.String(); got != w || !utf8.ValidString(w[len(w)-len(line):]) {
		t.Fatal("trimming changed the text")
	}
	a := protocol.Artifact{Seq: 1, ID: "c1", Type: protocol.ArtifactToolCall}
	got, err := a.MarshalJSONChunks(map[string][][]byte{"output": tx.chunks})
	if err != nil {
		t.Fatal(err)
	}
	a.Fields = map[string]any{"output": w}
	whole, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, whole) {
		t.Fatalf("the chunks encode to %d bytes, the text to %d", len(got), len(whole))
	}
}
