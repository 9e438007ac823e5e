package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MarshalJSONWith is MarshalJSON of a with each field of texts set to the
// string its bytes spell, without making that string. It is how the
// server writes an artifact whose streamed text the reducer holds as
// bytes: a tool output of 64 MB was in memory four times while its body
// was written (the held bytes, their copy as a string, and the encoder's
// buffer, grown by doubling, twice at its last growth); here it is the
// held bytes and one body, sized before it is written.
//
// The strings are escaped as encoding/json escapes them, so the bytes are
// those of json.Marshal (TestArtifactJSONIsJSONMarshal, FuzzArtifactJSON):
// bodies written before and after this encoder compare equal.
func (a *Artifact) MarshalJSONWith(texts map[string][]byte) ([]byte, error) {
	var chunked map[string][][]byte
	if texts != nil {
		chunked = make(map[string][][]byte, len(texts))
		for k, b := range texts {
			chunked[k] = [][]byte{b}
		}
	}
	return a.MarshalJSONChunks(chunked)
}

// MarshalJSONChunks is MarshalJSONWith of texts held in chunks: each
// field's value is the string its chunks spell one after another. Each
// chunk is escaped on its own, which is the escaping of the whole only
// where no chunk ends inside a rune (or a run of bytes that is not UTF-8):
// the reducer starts a chunk only where a string of valid UTF-8 begins
// after a rune that ended. A big text in chunks is never copied whole to
// grow it.
func (a *Artifact) MarshalJSONChunks(texts map[string][][]byte) ([]byte, error) {
	type entry struct {
		key string
		raw []byte // the value's JSON, unless text or str
		// text or str: a string value, escaped as it is copied.
		text  [][]byte
		str   string
		isStr bool
	}
	entries := make([]entry, 0, len(a.Fields)+len(texts)+6)
	for k, v := range a.Fields {
		if fixedArtifactKeys[k] {
			continue
		}
		if _, ok := texts[k]; ok {
			continue
		}
		if s, ok := v.(string); ok {
			entries = append(entries, entry{key: k, str: s, isStr: true})
			continue
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode artifact seq=%d field %q: %w", a.Seq, k, err)
		}
		entries = append(entries, entry{key: k, raw: raw})
	}
	for k, b := range texts {
		if !fixedArtifactKeys[k] {
			entries = append(entries, entry{key: k, text: b})
		}
	}
	entries = append(entries,
		entry{key: "seq", raw: strconv.AppendInt(nil, a.Seq, 10)},
		entry{key: "id", str: a.ID, isStr: true},
		entry{key: "type", str: string(a.Type), isStr: true},
		entry{key: "createdAt", raw: strconv.AppendInt(nil, a.CreatedAt, 10)},
		entry{key: "rev", raw: strconv.AppendInt(nil, a.Rev, 10)})
	if a.TurnID != "" {
		entries = append(entries, entry{key: "turnId", str: a.TurnID, isStr: true})
	}
	// json.Marshal writes a map's keys in sorted order.
	slices.SortFunc(entries, func(x, y entry) int { return strings.Compare(x.key, y.key) })
	size := 1 // "{", then per entry a separator, key, ":" and value
	for _, e := range entries {
		size += 1 + quotedLen(e.key) + 1
		switch {
		case e.raw != nil:
			size += len(e.raw)
		case e.isStr:
			size += quotedLen(e.str)
		default:
			size += 2
			for _, c := range e.text {
				size += quotedLen(c) - 2
			}
		}
	}
	out := make([]byte, 0, size)
	out = append(out, '{')
	for i, e := range entries {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendQuoted(out, e.key)
		out = append(out, ':')
		switch {
		case e.raw != nil:
			out = append(out, e.raw...)
		case e.isStr:
			out = appendQuoted(out, e.str)
		default:
			out = append(out, '"')
			for _, c := range e.text {
				out = appendEscaped(out, c)
			}
			out = append(out, '"')
		}
	}
	return append(out, '}'), nil
}

const hexDigits = "0123456789abcdef"

// jsonSafe says which ASCII bytes encoding/json copies as they are into a
// string with HTML escaping on: printable ones but for the quote, the
// backslash and < > &.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return t
}()

// appendQuoted appends s as encoding/json encodes a string (HTML escaping
// on): control characters, quote, backslash and < > & escaped, invalid
// UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendQuoted[T []byte | string](dst []byte, s T) []byte {
	return append(appendEscaped(append(dst, '"'), s), '"')
}

// AppendJSONText appends s as encoding/json writes it inside a string's
// quotes (HTML escaping on, invalid UTF-8 as \ufffd, U+2028 and U+2029
// escaped): the text of a stored artifact's string field, so that a
// store splicing appended text into a body writes what encoding the
// whole would. Splicing equals encoding the whole where the text before
// ends at a whole rune.
func AppendJSONText(dst []byte, s string) []byte { return appendEscaped(dst, s) }

// JSONTextLen is len(AppendJSONText(nil, s)), without writing it.
func JSONTextLen(s string) int { return quotedLen(s) - 2 }

// HTMLSafe reports whether json.HTMLEscape (and json.Marshal of a
// json.RawMessage, which escapes alike) would leave the JSON text b as it
// is: it holds no '<', '>' or '&' and no U+2028 or U+2029, as every body
// this package encodes. A reader can then send a stored artifact on as it
// is, however big.
func HTMLSafe(b []byte) bool {
	return bytes.IndexByte(b, '<') < 0 && bytes.IndexByte(b, '>') < 0 && bytes.IndexByte(b, '&') < 0 &&
		!bytes.Contains(b, []byte("\u2028")) && !bytes.Contains(b, []byte("\u2029"))
}

// appendEscaped is appendQuoted without the quotes.
func appendEscaped[T []byte | string](dst []byte, s T) []byte {
	start, retry := 0, 0
	for i := 0; i < len(s); {
		if i >= retry && i+8 <= len(s) {
			if safe8(load8(s, i)) {
				i += 8
				continue
			}
			retry = i + 8 // a word to escape: byte by byte through it
		}
		if b := s[i]; b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := decodeRune(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// load8 returns the 8 bytes of s at i as a little-endian word.
func load8[T []byte | string](s T, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// hasZero reports whether a byte of x is 0.
func hasZero(x uint64) bool { return (x-ones)&^x&highs != 0 }

// safe8 reports whether all 8 bytes of x are ASCII that encoding/json
// copies as they are (jsonSafe): a tool's output is mostly such text, and
// testing it a word at a time made escaping a 64 MB output three times
// faster than a byte at a time.
func safe8(x uint64) bool {
	if x&highs != 0 || (x-0x20*ones)&^x&highs != 0 { // not ASCII, or a control character
		return false
	}
	return !hasZero(x^('"'*ones)) && !hasZero(x^('\\'*ones)) && !hasZero(x^('<'*ones)) && !hasZero(x^('>'*ones)) && !hasZero(x^('&'*ones))
}

// quotedLen is len(appendQuoted(nil, s)), without writing it.
func quotedLen[T []byte | string](s T) int {
	n, retry := 2, 0
	for i := 0; i < len(s); {
		if i >= retry && i+8 <= len(s) {
			if safe8(load8(s, i)) {
				n += 8
				i += 8
				continue
			}
			retry = i + 8
		}
		if b := s[i]; b < utf8.RuneSelf {
			switch {
			case jsonSafe[b]:
				n++
			case b == '\\' || b == '"' || b == '\b' || b == '\f' || b == '\n' || b == '\r' || b == '\t':
				n += 2
			default:
				n += 6
			}
			i++
			continue
		}
		c, size := decodeRune(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			n += 6
		case c == '\u2028' || c == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}

// decodeRune is utf8.DecodeRune of either type, copying at most
// utf8.UTFMax bytes (which stay on the stack) rather than the rest.
func decodeRune[T []byte | string](s T) (rune, int) {
	return utf8.DecodeRuneInString(string(s[:min(len(s), utf8.UTFMax)]))
}
