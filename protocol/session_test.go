package protocol_test

import (
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

func TestSummarize(t *testing.T) {
	eighty := strings.Repeat("a", 80)
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"blank", " \t\n \n", ""},
		{"plain", "fix the bug", "fix the bug"},
		{"first line only", "fix the bug\nin reducer/apply.go\nthanks", "fix the bug"},
		{"CRLF", "fix the bug\r\nsecond", "fix the bug"},
		{"leading blank lines skipped", "\n\n  fix the bug  \nmore", "fix the bug"},
		{"whitespace collapsed", "fix \t the   bug", "fix the bug"},
		{"80 runes kept", eighty, eighty},
		{"81 runes cut", eighty + "b", eighty + "…"},
		{"cut after collapsing", strings.Repeat("a ", 40) + "b", strings.Repeat("a ", 40) + "…"},
		{"multibyte 80 kept", strings.Repeat("é", 80), strings.Repeat("é", 80)},
		{"multibyte cut by runes", strings.Repeat("日本", 41), strings.Repeat("日本", 40) + "…"},
		{"emoji", strings.Repeat("🙂", 81) + "\nx", strings.Repeat("🙂", 80) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := protocol.Summarize(tt.in); got != tt.want {
				t.Errorf("Summarize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestValidateSessionID(t *testing.T) {
	tests := []struct {
		id   string
		want string // "" = valid
	}{
		{"a", ""},
		{"sess-1", ""},
		{"A.b_c-9", ""},
		{"streams", ""},
		{"Stream", ""},
		{strings.Repeat("x", 128), ""},
		{"stream", `session id "stream" is reserved`},
		{"stream-ticket", `session id "stream-ticket" is reserved`},
		{".", `session id "." is reserved: an id made only of dots is a relative path segment (browsers and URL libraries resolve it away)`},
		{"..", `session id ".." is reserved: an id made only of dots is a relative path segment (browsers and URL libraries resolve it away)`},
		{"...", `session id "..." is reserved: an id made only of dots is a relative path segment (browsers and URL libraries resolve it away)`},
		{".a", ""},
		{"a..", ""},
		{"..-", ""},
		{"", "session id: must not be empty"},
		{strings.Repeat("x", 129), "session id: longer than 128 characters"},
		{"a:b", "session id: may contain only letters, digits, '.', '_' and '-' (found ':')"},
		{"a/b", "session id: may contain only letters, digits, '.', '_' and '-' (found '/')"},
		{"a b", "session id: may contain only letters, digits, '.', '_' and '-' (found ' ')"},
		{"ü", "session id: may contain only letters, digits, '.', '_' and '-' (found a non-printable byte)"},
		{"a\x00", "session id: may contain only letters, digits, '.', '_' and '-' (found a non-printable byte)"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			err := protocol.ValidateSessionID(tt.id)
			if tt.want == "" {
				if err != nil {
					t.Errorf("ValidateSessionID(%q) = %v, want nil", tt.id, err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("ValidateSessionID(%q) = %v, want %q", tt.id, err, tt.want)
			}
			if c := protocol.CodeOf(err); c != protocol.CodeInvalid {
				t.Errorf("CodeOf = %q, want invalid", c)
			}
		})
	}
}

func TestValidateProject(t *testing.T) {
	for _, p := range []string{"rein", "a.b-c_d", strings.Repeat("p", 128), "stream"} {
		if err := protocol.ValidateProject(p); err != nil {
			t.Errorf("ValidateProject(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range []string{"", "a b", "a/b", strings.Repeat("p", 129)} {
		err := protocol.ValidateProject(p)
		if protocol.CodeOf(err) != protocol.CodeInvalid || !strings.HasPrefix(err.Error(), "project: ") {
			t.Errorf("ValidateProject(%q) = %v, want an invalid project error", p, err)
		}
	}
}

func TestValidEventID(t *testing.T) {
	for _, id := range []string{"a", "turn:1", "toolu_01ABC", "x.y-z", strings.Repeat("i", 128)} {
		if !protocol.ValidEventID(id) {
			t.Errorf("ValidEventID(%q) = false", id)
		}
	}
	for _, id := range []string{"", "a b", "a/b", "é", strings.Repeat("i", 129)} {
		if protocol.ValidEventID(id) {
			t.Errorf("ValidEventID(%q) = true", id)
		}
	}
}

func TestOptionKindIsAllow(t *testing.T) {
	want := map[protocol.OptionKind]bool{
		protocol.AllowOnce: true, protocol.AllowAlways: true,
		protocol.RejectOnce: false, protocol.RejectAlways: false, "": false, "allow": false,
	}
	for k, w := range want {
		if got := k.IsAllow(); got != w {
			t.Errorf("%q.IsAllow() = %v, want %v", k, got, w)
		}
	}
}
