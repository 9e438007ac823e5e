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

// A text made whole (a restored artifact's) is held in chunks as an
// appended one is, each ending where a rune ends: held as one chunk, a
// restored 64 MB output went to the database as one append of 64 MB when
// the server rebased it.
func TestNewTextChunks(t *testing.T) {
	for _, s := range []string{
		"",
		"short",
		strings.Repeat("é€😀<x>\n", chunkBytes/8),             // runes across every boundary
		strings.Repeat("x", chunkBytes-1) + "😀" + "tail",     // a rune across the first boundary
		strings.Repeat("\x80", chunkBytes+5),                 // no rune starts at all
		strings.Repeat("y", 3*chunkBytes) + "\xe2\x82" + "z", // a cut rune at the end
	} {
		tx := newText(s)
		if tx.n != len(s) || tx.String() != s || !tx.equal(s) {
			t.Fatalf("newText of %d bytes reads back as %d", len(s), tx.n)
		}
		for i, c := range tx.chunks {
			if len(c) > 2*chunkBytes+utf8.UTFMax {
				t.Errorf("%d bytes: chunk %d holds %d", len(s), i, len(c))
			}
			if i < len(tx.chunks)-1 && !endsRune(c) {
				t.Errorf("%d bytes: chunk %d ends inside a rune: % x", len(s), i, c[len(c)-3:])
			}
		}
		if len(s) > 2*chunkBytes && utf8.ValidString(s) && len(tx.chunks) < len(s)/chunkBytes {
			t.Errorf("%d bytes in %d chunks; want about one per %d", len(s), len(tx.chunks), chunkBytes)
		}
	}
}
