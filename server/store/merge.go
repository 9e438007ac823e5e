package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
)

// MergeAppends returns an artifact body with appended text added to its
// string fields and its "rev" set to rev. body is what
// protocol.Artifact.MarshalJSON wrote (one object, keys sorted, no spaces);
// appends are in the order they happened. The result is byte for byte
// what MarshalJSON writes for the artifact with those fields grown: the
// stored values are kept verbatim, a string grows by splicing the encoded
// appended text before its closing quote, and the keys are written in
// encoding/json's map order (sorted).
//
// Splicing equals encoding the concatenation because encoding/json escapes
// valid UTF-8 one rune at a time; the writer stores as appends only text
// that is valid UTF-8 (strings decoded from JSON always are).
func MergeAppends(body []byte, rev int64, appends []FieldAppend) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, fmt.Errorf("merge appends: decode body: %w", err)
	}
	grown := make(map[string][]byte)
	for _, a := range appends {
		if a.Text == "" {
			continue
		}
		cur, ok := grown[a.Field]
		if !ok {
			cur = fields[a.Field]
			switch {
			case cur == nil:
				cur = []byte(`""`)
			case len(cur) < 2 || cur[0] != '"':
				return nil, fmt.Errorf("merge appends: field %q is not a string", a.Field)
			}
			// cur is the decoder's own copy of the value (or a new
			// literal), so splicing into it touches nothing shared.
		}
		enc, err := json.Marshal(a.Text)
		if err != nil {
			return nil, fmt.Errorf("merge appends: encode %q: %w", a.Field, err)
		}
		grown[a.Field] = append(cur[:len(cur)-1], enc[1:]...)
	}
	for f, v := range grown {
		fields[f] = v
	}
	fields["rev"] = strconv.AppendInt(nil, rev, 10)

	keys := make([]string, 0, len(fields))
	size := 2
	for k, v := range fields {
		keys = append(keys, k)
		size += len(k) + len(v) + 8
	}
	slices.Sort(keys)
	out := make([]byte, 0, size)
	out = append(out, '{')
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		ek, err := json.Marshal(k)
		if err != nil {
			return nil, fmt.Errorf("merge appends: encode key %q: %w", k, err)
		}
		out = append(append(out, ek...), ':')
		out = append(out, fields[k]...)
	}
	return append(out, '}'), nil
}
