package protocol

import (
	"crypto/sha256"
	"encoding/hex"
)

// SanitizeEventID maps an agent's own id (a tool call id, a message id, an
// item id) into the event id charset and to at most max bytes (at most
// MaxIDLen), so an adapter can prefix it, for example with its turn, and
// whatever an agent calls things, the events it posts validate. An id
// that is valid and short enough already is kept as it is; an empty one
// becomes "_".
//
// Any other id keeps what it can of itself, readable (every byte outside
// the charset replaced with '_', cut to fit), and ends with '.' and 12 hex
// digits of its SHA-256. Replacing and cutting alone made ids the agent
// tells apart one ("call/1" and "call 1"; Gemini CLI's "<tool>-<ms>" for a
// tool with a long name, alike in its first 64 bytes), and adapters and
// the reducer key tool calls, blocks and options by id: two tool calls of
// a turn were shown as one, holding the second's input and output.
func SanitizeEventID(s string, max int) string {
	max = min(max, MaxIDLen)
	if s == "" {
		return "_"
	}
	if len(s) <= max && ValidEventID(s) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	tag := "." + hex.EncodeToString(sum[:6])
	if max <= len(tag) {
		return tag[len(tag)-max:]
	}
	b := []byte(s[:min(len(s), max-len(tag))])
	for i, c := range b {
		if !eventIDByte(c) {
			b[i] = '_'
		}
	}
	return string(b) + tag
}

func eventIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == ':'
}
