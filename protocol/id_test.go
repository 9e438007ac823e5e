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
