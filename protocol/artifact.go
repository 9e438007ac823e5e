package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ArtifactType names what an artifact shows.
type ArtifactType string

// Artifact types, see PROTOCOL.md "Artifacts".
const (
	ArtifactTurn          ArtifactType = "turn"
	ArtifactUserMessage   ArtifactType = "user_message"
	ArtifactAssistantText ArtifactType = "assistant_text"
	ArtifactReasoning     ArtifactType = "reasoning"
	ArtifactToolCall      ArtifactType = "tool_call"
	ArtifactPlan          ArtifactType = "plan"
	ArtifactPermission    ArtifactType = "permission"
	ArtifactFileChange    ArtifactType = "file_change"
	ArtifactNotice        ArtifactType = "notice"
)

// Artifact is one thing a client renders. On the wire it is a flat object:
// the fixed keys below plus the type's own fields (Fields), which are
// either set (any JSON value) or appended (strings).
//
// Field values are what encoding/json produces for the value (string,
// float64, bool, nil, []any, map[string]any) or a json.RawMessage; both
// marshal to the same bytes, which is what equality means for artifacts.
type Artifact struct {
	Seq       int64          `json:"seq"`
	ID        string         `json:"id"`
	Type      ArtifactType   `json:"type"`
	TurnID    string         `json:"turnId,omitempty"`
	CreatedAt int64          `json:"createdAt"`
	Rev       int64          `json:"rev"`
	Fields    map[string]any `json:"-"`
}

var fixedArtifactKeys = map[string]bool{"seq": true, "id": true, "type": true, "turnId": true, "createdAt": true, "rev": true}

// MarshalJSON flattens Fields beside the fixed keys: the bytes json.Marshal
// gives for one map of them all (keys sorted, HTML characters escaped).
func (a Artifact) MarshalJSON() ([]byte, error) { return a.MarshalJSONWith(nil) }

// UnmarshalJSON splits the fixed keys from the type's fields, as
// unmarshalArtifactSlow does with encoding/json, but reads each string
// field once into a string of its own: encoding/json unescapes a string
// into a buffer and copies that into the string, and the two decodes
// (the fields, then the fixed keys) read the object twice, so a client
// decoding an artifact snapshot of a 64 MB tool output allocated 128 MB
// for its text. Anything but a plain object of the shapes a server
// writes (a fixed key spelled in another case, a fixed key of another
// JSON type, invalid JSON) goes to unmarshalArtifactSlow, whose result
// and errors are the reference (FuzzArtifactUnmarshal holds both to it).
func (a *Artifact) UnmarshalJSON(b []byte) error {
	if out, ok := unmarshalArtifactFast(b); ok {
		*a = out
		return nil
	}
	return a.unmarshalArtifactSlow(b)
}

// unmarshalArtifactSlow is UnmarshalJSON through encoding/json.
func (a *Artifact) unmarshalArtifactSlow(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	var fixed struct {
		Seq       int64        `json:"seq"`
		ID        string       `json:"id"`
		Type      ArtifactType `json:"type"`
		TurnID    string       `json:"turnId"`
		CreatedAt int64        `json:"createdAt"`
		Rev       int64        `json:"rev"`
	}
	if err := json.Unmarshal(b, &fixed); err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	*a = Artifact{Seq: fixed.Seq, ID: fixed.ID, Type: fixed.Type, TurnID: fixed.TurnID, CreatedAt: fixed.CreatedAt, Rev: fixed.Rev, Fields: map[string]any{}}
	for k, v := range m {
		if !fixedArtifactKeys[k] {
			a.Fields[k] = v
		}
	}
	return nil
}

// unmarshalArtifactFast decodes a JSON object of fixed keys (numbers and
// strings, spelled exactly) and fields; ok is false for anything else.
func unmarshalArtifactFast(b []byte) (a Artifact, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' || !json.Valid(b) {
		return a, false
	}
	a.Fields = map[string]any{}
	i = skipSpace(b, i+1)
	if b[i] == '}' {
		return a, true
	}
	for {
		// Valid JSON: a key, a colon, a value, then a comma or the end.
		end := stringEnd(b, i)
		k := unquoteJSON(b[i:end])
		i = skipSpace(b, end)
		i = skipSpace(b, i+1)
		start := i
		if b[i] == '"' {
			i = stringEnd(b, i)
		} else {
			var valid bool
			if i, valid = skipValue(b, i, 0); !valid {
				return a, false // deeper than the scanner goes
			}
		}
		v := b[start:i]
		if fixedArtifactKeys[k] {
			if !a.setFixed(k, v) {
				return a, false
			}
		} else if fixedFold(k) {
			// encoding/json matches struct keys in any case.
			return a, false
		} else if v[0] == '"' {
			a.Fields[k] = unquoteJSON(v)
		} else {
			var val any
			if json.Unmarshal(v, &val) != nil {
				return a, false
			}
			a.Fields[k] = val
		}
		i = skipSpace(b, i)
		if b[i] == '}' {
			return a, true
		}
		i = skipSpace(b, i+1)
	}
}

// setFixed sets the fixed key k from v when v is the JSON type the key
// has (a number for seq, createdAt and rev, a string for the rest).
func (a *Artifact) setFixed(k string, v []byte) bool {
	switch k {
	case "seq", "createdAt", "rev":
		if !isNumberStart(v[0]) {
			return false
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return false // a fraction or exponent, or out of range
		}
		switch k {
		case "seq":
			a.Seq = n
		case "createdAt":
			a.CreatedAt = n
		default:
			a.Rev = n
		}
	default:
		if v[0] != '"' {
			return false
		}
		s := unquoteJSON(v)
		switch k {
		case "id":
			a.ID = s
		case "type":
			a.Type = ArtifactType(s)
		default:
			a.TurnID = s
		}
	}
	return true
}

// fixedFold reports whether k is a fixed key in another case, as
// encoding/json compares keys (bytes.EqualFold: "ſeq" is "seq").
func fixedFold(k string) bool {
	for f := range fixedArtifactKeys {
		if strings.EqualFold(k, f) {
			return true
		}
	}
	return false
}

// unquoteJSON returns the string a valid JSON string literal q stands
// for, as encoding/json decodes it (an invalid UTF-8 byte or a lone
// surrogate becomes U+FFFD), in one allocation of about its size. The
// text between escapes is copied a run at a time.
func unquoteJSON(q []byte) string {
	in := q[1 : len(q)-1]
	if bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
		return string(in)
	}
	var out strings.Builder
	out.Grow(len(in))
	for len(in) > 0 {
		j := bytes.IndexByte(in, '\\')
		if j < 0 {
			j = len(in)
		}
		writeUTF8(&out, in[:j])
		if in = in[j:]; len(in) == 0 {
			break
		}
		n := 2 // the escape's length
		switch in[1] {
		case 'b':
			out.WriteByte('\b')
		case 'f':
			out.WriteByte('\f')
		case 'n':
			out.WriteByte('\n')
		case 'r':
			out.WriteByte('\r')
		case 't':
			out.WriteByte('\t')
		case 'u':
			r := hex4(in[2:])
			n = 6
			if utf16.IsSurrogate(r) {
				// A pair when a low surrogate's escape follows;
				// encoding/json makes U+FFFD of anything else and reads
				// what follows on its own.
				r2 := rune(-1)
				if len(in) >= 12 && in[6] == '\\' && in[7] == 'u' {
					r2 = hex4(in[8:])
				}
				if r = utf16.DecodeRune(r, r2); r != utf8.RuneError {
					n = 12
				}
			}
			out.WriteRune(r)
		default: // '"', '\\', '/'
			out.WriteByte(in[1])
		}
		in = in[n:]
	}
	return out.String()
}

// writeUTF8 writes b with each byte that is not part of valid UTF-8
// replaced by U+FFFD, as encoding/json reads a string: valid runs are
// copied whole.
func writeUTF8(out *strings.Builder, b []byte) {
	if utf8.Valid(b) {
		out.Write(b)
		return
	}
	for len(b) > 0 {
		n := validPrefix(b)
		out.Write(b[:n])
		if b = b[n:]; len(b) > 0 {
			out.WriteRune(utf8.RuneError)
			b = b[1:] // DecodeRune reads an invalid byte alone
		}
	}
}

// validPrefix returns the length of b's longest valid UTF-8 prefix.
func validPrefix(b []byte) int {
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(b)
}

// stringEnd returns the index just past the string literal at b[i] in
// valid JSON: its first quote that an even number of backslashes precede.
func stringEnd(b []byte, i int) int {
	for i++; ; {
		q := i + bytes.IndexByte(b[i:], '"')
		n := 0
		for b[q-1-n] == '\\' {
			n++
		}
		if i = q + 1; n%2 == 0 {
			return i
		}
	}
}

// hex4 reads the four hex digits of a \u escape (valid JSON).
func hex4(h []byte) rune {
	var r rune
	for _, c := range h[:4] {
		switch {
		case c <= '9':
			r = r<<4 | rune(c-'0')
		case c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			r = r<<4 | rune(c-'a'+10)
		}
	}
	return r
}

// String returns the field as a string, or "" when it is absent or not a string.
func (a *Artifact) String(field string) string {
	switch v := a.Fields[field].(type) {
	case string:
		return v
	case json.RawMessage:
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
	}
	return ""
}

// Clone returns a copy whose Fields map can be changed independently.
// Field values themselves are shared: they are treated as immutable.
func (a *Artifact) Clone() *Artifact {
	c := *a
	c.Fields = make(map[string]any, len(a.Fields))
	for k, v := range a.Fields {
		c.Fields[k] = v
	}
	return &c
}

// TurnStatus is a turn artifact's "status".
type TurnStatus string

// Turn statuses.
const (
	TurnRunning   TurnStatus = "running"
	TurnCompleted TurnStatus = "completed"
	TurnCancelled TurnStatus = "cancelled"
	TurnFailed    TurnStatus = "failed"
	// TurnInterrupted: the turn was cut off (its agent or agentd died, or a
	// new turn started) and nobody said how it ended; see StopInterrupted.
	TurnInterrupted TurnStatus = "interrupted"
)

// BlockStatus is the "status" of an assistant_text or reasoning artifact.
type BlockStatus string

// Text and reasoning block statuses.
const (
	BlockStreaming BlockStatus = "streaming"
	BlockDone      BlockStatus = "done"
	// BlockInterrupted: the turn was cancelled, interrupted or failed
	// (stop reason error; the agent exited) while the block still
	// streamed: its text was cut short. A turn the agent ended otherwise
	// closes its blocks done.
	BlockInterrupted BlockStatus = "interrupted"
)

// PermissionStatus is a permission artifact's "status".
type PermissionStatus string

// Permission statuses.
const (
	PermissionPending   PermissionStatus = "pending"
	PermissionApproved  PermissionStatus = "approved"
	PermissionDenied    PermissionStatus = "denied"
	PermissionCancelled PermissionStatus = "cancelled"
)

// The appendable artifact fields: streamed text that artifact_updated
// grows with "append" rather than replacing with "set".
const (
	FieldText      = "text"      // assistant_text, reasoning
	FieldInputText = "inputText" // tool_call: the streamed input
	FieldOutput    = "output"    // tool_call
)

// Appendable reports whether field of an artifact of type t is streamed
// text, which updates append to (and a store may append to rather than
// rewrite). Every other field is only ever set whole.
func Appendable(t ArtifactType, field string) bool {
	switch t {
	case ArtifactAssistantText, ArtifactReasoning:
		return field == FieldText
	case ArtifactToolCall:
		return field == FieldInputText || field == FieldOutput
	}
	return false
}
