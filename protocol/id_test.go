package protocol

import (
	"strings"
	"testing"
)

func TestSanitizeEventID(t *testing.T) {
	// Ids already valid and short enough are kept as they are.
	for _, c := range []struct {
		in  string
		max int
	}{
		{"toolu_01ABC", 64},
		{"turn-7:item_3", 64},
		{strings.Repeat("a", 100), 100},
		{strings.Repeat("a", MaxIDLen), 500},
	} {
		if got := SanitizeEventID(c.in, c.max); got != c.in {
			t.Errorf("SanitizeEventID(%q, %d) = %q, want it unchanged", c.in, c.max, got)
		}
	}
	if got := SanitizeEventID("", 64); got != "_" {
		t.Errorf(`SanitizeEventID("", 64) = %q, want "_"`, got)
	}
	// Others keep what they can of the agent's id, readable.
	for _, c := range []struct {
		in     string
		max    int
		prefix string
	}{
		{"call/1 x", 64, "call_1_x."},
		{"turn:é", 64, "turn:__."}, // two bytes, two underscores
		{strings.Repeat("a", 200), 100, strings.Repeat("a", 87) + "."},
		{strings.Repeat("a", 200), 500, strings.Repeat("a", MaxIDLen-13) + "."},
	} {
		got := SanitizeEventID(c.in, c.max)
		if !strings.HasPrefix(got, c.prefix) || len(got) > min(c.max, MaxIDLen) || !ValidEventID(got) {
			t.Errorf("SanitizeEventID(%q, %d) = %q, want a valid id of at most %d bytes starting %q", c.in, c.max, got, min(c.max, MaxIDLen), c.prefix)
		}
	}
}

// Ids an agent tells apart stay apart: adapters key tool calls, blocks
// and options by them, and the reducer shows one artifact per id in a
// turn. Gemini CLI names a call after its tool and the time in ms, so two
// calls of a tool with a long (MCP) name were alike in their first 64
// bytes, and the second call's tool_call_start, output and end went into
// the first's artifact: one call shown, with the second's output.
func TestSanitizeEventIDKeepsDistinctIDsApart(t *testing.T) {
	name := "github__add_pull_request_review_comment_to_pending_review"
	for _, pair := range [][2]string{
		{"call/1", "call 1"},
		{"call/1", "call_1"},
		{"é", "è"},
		{name + "-1733456789012", name + "-1733456790345"},
		{strings.Repeat("x", 64) + "a", strings.Repeat("x", 64) + "b"},
	} {
		a, b := SanitizeEventID(pair[0], 64), SanitizeEventID(pair[1], 64)
		if a == b {
			t.Errorf("SanitizeEventID(%q) and SanitizeEventID(%q) are both %q", pair[0], pair[1], a)
		}
		for _, id := range []string{a, b} {
			if !ValidEventID(id) || len(id) > 64 {
				t.Errorf("%q is not a valid id of at most 64 bytes", id)
			}
		}
	}
	// The same id always maps to the same: an adapter maps a tool call's
	// id once per event about it.
	if a, b := SanitizeEventID("call/1", 64), SanitizeEventID("call/1", 64); a != b {
		t.Errorf("SanitizeEventID(call/1) gave %q, then %q", a, b)
	}
}

func TestValidateIdempotencyKey(t *testing.T) {
	ok := []string{"k", "0f8fad5b-d9cb-469f-a165-70867728950e", strings.Repeat("~", MaxIdempotencyKeyLen)}
	for _, k := range ok {
		if err := ValidateIdempotencyKey(k); err != nil {
			t.Errorf("ValidateIdempotencyKey(%q) = %v, want nil", k, err)
		}
	}
	bad := map[string]string{
		"": "must be 1 to 255 characters, got 0",
		strings.Repeat("a", MaxIdempotencyKeyLen+1): "got 256",
		"a b":   "byte 0x20 at 1",
		"ké":    "byte 0xc3 at 1",
		"a\x7f": "byte 0x7f at 1",
	}
	for k, want := range bad {
		err := ValidateIdempotencyKey(k)
		if err == nil || CodeOf(err) != CodeInvalid || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), HeaderIdempotencyKey) {
			t.Errorf("ValidateIdempotencyKey(%q) = %v, want an invalid error naming the header and %q", k, err, want)
		}
	}
}
