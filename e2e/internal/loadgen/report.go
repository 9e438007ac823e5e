package loadgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Figure is one line of a table and one entry of bench.json. With several
// runs, Value, Baseline and Ratio are medians (Ratio the median of the
// per-run ratios, each against the baseline measured in the same run),
// Runs holds every run and Min/Max the spread; Met is judged on the
// medians.
type Figure struct {
	Name     string   `json:"name"`
	Unit     string   `json:"unit"`
	Value    float64  `json:"value"`
	Baseline *float64 `json:"baseline"`
	Ratio    *float64 `json:"ratio"`
	Target   float64  `json:"target"`
	// Higher: the target is a minimum (of the ratio, or the value when
	// there is no baseline); otherwise a maximum.
	Higher bool   `json:"higherIsBetter"`
	Met    bool   `json:"met"`
	Note   string `json:"note,omitempty"`

	Runs []Sample `json:"runs,omitempty"`
	Min  *Sample  `json:"min,omitempty"`
	Max  *Sample  `json:"max,omitempty"`
}

// Sample is one run's value, baseline and ratio of a figure (or the
// smallest or largest of each over the runs).
type Sample struct {
	Value    float64  `json:"value"`
	Baseline *float64 `json:"baseline,omitempty"`
	Ratio    *float64 `json:"ratio,omitempty"`
}

// Judge sets Met from the ratio (or the value when there is no baseline)
// against the target.
func (f *Figure) Judge() {
	v := f.Value
	if f.Ratio != nil {
		v = *f.Ratio
	}
	if f.Higher {
		f.Met = v >= f.Target
	} else {
		f.Met = v <= f.Target
	}
}

// MergeJSON sets the given top-level keys of the JSON object in path and
// keeps every other key, so rein-bench and rein-soak each rewrite only
// their own part of bench.json. A missing file starts empty; a file that is
// not a JSON object is an error rather than something to overwrite.
func MergeJSON(path string, fields map[string]any) error {
	doc := map[string]json.RawMessage{}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("merge into %s: %w", path, err)
	default:
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("merge into %s: not a JSON object (move it away to start afresh): %w", path, err)
		}
	}
	for k, v := range fields {
		raw, err := marshal(v)
		if err != nil {
			return fmt.Errorf("merge into %s: key %s: %w", path, k, err)
		}
		doc[k] = raw
	}
	out, err := marshal(doc)
	if err != nil {
		return fmt.Errorf("merge into %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return fmt.Errorf("merge into %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("merge into %s: %w", path, err)
	}
	return nil
}

// marshal indents and leaves <, > and & alone: notes say "a -> b", and the
// file is read by people, not embedded in HTML.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
