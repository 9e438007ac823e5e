package reducer

import "unicode/utf8"

// chunkBytes is the size past which a streamed text grows by a new chunk
// rather than a bigger slice.
const chunkBytes = 1 << 20

// text is a streamed field's bytes (a tool's output, a block's text) in
// chunks: one slice while the text is small, then chunks of about
// chunkBytes. Go grows one big slice by a quarter, copying it and
// holding both until the copy is done, so a 256 MB output held about 2.25
// times its size at each growth near its end; in chunks it is held once,
// and a growth copies at most a chunk.
//
// A chunk ends only where a rune ends, so that escaping each chunk on its
// own escapes the whole (protocol.Artifact.MarshalJSONChunks): a delta that
// would cut one goes on growing the last chunk instead.
type text struct {
	chunks [][]byte
	n      int // the text's length
	size   int // the chunks' capacity, for heldBytes
}

// newText returns a text holding s, in chunks of about chunkBytes that
// end where a rune ends, as if s had been appended a chunk at a time. A
// text restored from the store (Restore) may be the whole output of a
// tool: held as one chunk, a write of it as appends (the server's
// rebase of a big artifact its policy does not know) handed the database
// the whole text in one append.
func newText(s string) *text {
	t := &text{}
	for len(s) > chunkBytes {
		n := chunkBytes
		// Back to the start of a rune (at most 3 bytes in valid UTF-8;
		// in invalid UTF-8, append grows the chunk instead).
		for i := 0; i < utf8.UTFMax-1 && !utf8.RuneStart(s[n]); i++ {
			n--
		}
		t.append(s[:n])
		s = s[n:]
	}
	t.append(s)
	return t
}

func (t *text) append(s string) {
	if s == "" {
		return
	}
	t.n += len(s)
	last := len(t.chunks) - 1
	if last < 0 || len(t.chunks[last])+len(s) > chunkBytes && endsRune(t.chunks[last]) {
		if last < 0 {
			// A first chunk sized to its text: most texts never grow.
			t.chunks = append(t.chunks, []byte(s))
			t.size += len(s)
			return
		}
		c := make([]byte, 0, max(chunkBytes, len(s)))
		t.chunks = append(t.chunks, append(c, s...))
		t.size += cap(c)
		return
	}
	before := cap(t.chunks[last])
	t.chunks[last] = append(t.chunks[last], s...)
	t.size += cap(t.chunks[last]) - before
}

// endsRune reports whether b's last rune is whole and valid UTF-8.
func endsRune(b []byte) bool {
	r, size := utf8.DecodeLastRune(b)
	return r != utf8.RuneError || size > 1
}

// equal reports whether t holds exactly s.
func (t *text) equal(s string) bool {
	if t.n != len(s) {
		return false
	}
	for _, c := range t.chunks {
		if string(c) != s[:len(c)] {
			return false
		}
		s = s[len(c):]
	}
	return true
}

// String returns the text as one string (a copy).
func (t *text) String() string {
	if len(t.chunks) == 1 {
		return string(t.chunks[0])
	}
	b := make([]byte, 0, t.n)
	for _, c := range t.chunks {
		b = append(b, c...)
	}
	return string(b)
}

// trimmed returns the chunks without the last cut bytes (0 <= cut <= n),
// sharing t's memory.
func (t *text) trimmed(cut int) [][]byte {
	out := t.chunks
	for cut > 0 {
		c := out[len(out)-1]
		if cut < len(c) {
			out = append(out[:len(out)-1:len(out)-1], c[:len(c)-cut])
			break
		}
		cut -= len(c)
		out = out[:len(out)-1]
	}
	return out
}
