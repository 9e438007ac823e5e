package claude_test

import (
	"slices"
	"testing"

	"github.com/rein-ai/rein/agentd/internal/claude"
)

func TestArgs(t *testing.T) {
	all := []string{"-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose", "--include-partial-messages", "--permission-prompt-tool", "stdio"}
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"bare", []string{"claude"}, append([]string{"claude"}, all...)},
		{"keeps the operator's flags after agentd's", []string{"claude", "--model", "sonnet"}, append(append([]string{"claude"}, all...), "--model", "sonnet")},
		{"present flags are not added again", []string{"claude", "--print", "--verbose", "--output-format=stream-json", "--permission-prompt-tool", "mcp__auth__ask"},
			[]string{"claude", "--input-format", "stream-json", "--include-partial-messages", "--print", "--verbose", "--output-format=stream-json", "--permission-prompt-tool", "mcp__auth__ask"}},
		{"after -- is a prompt, not a flag", []string{"claude", "--", "-p"}, append(append([]string{"claude"}, all...), "--", "-p")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := claude.Args(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("Args(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestResumeArgs(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		id   string
		want []string
	}{
		{"adds --resume first", []string{"claude", "-p", "--model", "sonnet"}, "s-1", []string{"claude", "--resume", "s-1", "-p", "--model", "sonnet"}},
		{"no id, no flag", []string{"claude", "-p"}, "", []string{"claude", "-p"}},
		{"the operator's --resume wins", []string{"claude", "--resume=other"}, "s-1", []string{"claude", "--resume=other"}},
		{"the operator's --continue wins", []string{"claude", "-c"}, "s-1", []string{"claude", "-c"}},
		{"after -- is a prompt", []string{"claude", "--", "--resume"}, "s-1", []string{"claude", "--resume", "s-1", "--", "--resume"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := claude.ResumeArgs(tt.in, tt.id); !slices.Equal(got, tt.want) {
				t.Errorf("ResumeArgs(%q, %q)\n got %q\nwant %q", tt.in, tt.id, got, tt.want)
			}
		})
	}
}
