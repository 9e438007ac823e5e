package protocol

import (
	"strings"
	"testing"
)

func TestSanitizeEventID(t *testing.T) {
	cases := []struct {
		in   string
		max  int
		want string
	}{
		{"toolu_01ABC", 64, "toolu_01ABC"},
		{"call/1 x", 64, "call_1_x"},
		{"turn:é", 64, "turn:__"}, // two bytes, two underscores
		{"", 64, "_"},
		{strings.Repeat("a", 200), 100, strings.Repeat("a", 100)},
		{strings.Repeat("a", 200), 500, strings.Repeat("a", MaxIDLen)},
	}
	for _, c := range cases {
		got := SanitizeEventID(c.in, c.max)
		if got != c.want {
			t.Errorf("SanitizeEventID(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
		}
		if !ValidEventID(got) {
			t.Errorf("SanitizeEventID(%q) = %q is not a valid event id", c.in, got)
		}
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
