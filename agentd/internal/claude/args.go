package claude

import "strings"

// requiredFlags are the flags agentd needs Claude Code to run with, each
// with its value ("" for a bare flag), in the order they are added.
var requiredFlags = []struct {
	names []string // spellings that count as present
	value string
}{
	// -p: headless; the stream-json formats: one JSON message per line
	// both ways, so prompts, interrupts and permission answers can be
	// written while a turn runs (multi-turn in one process).
	{[]string{"-p", "--print"}, ""},
	{[]string{"--input-format"}, "stream-json"},
	{[]string{"--output-format"}, "stream-json"},
	// stream-json output requires --verbose with -p.
	{[]string{"--verbose"}, ""},
	// stream_event lines: token deltas, not just whole messages.
	{[]string{"--include-partial-messages"}, ""},
	// Permission prompts come to agentd as can_use_tool control requests
	// instead of being refused for want of a terminal.
	{[]string{"--permission-prompt-tool"}, "stdio"},
}

// Args returns argv with every flag agentd needs added after argv[0] when
// it is absent; flags already given (any value, `--flag value` or
// `--flag=value`) are left as they are, so an operator can override one.
func Args(argv []string) []string {
	if len(argv) == 0 {
		return argv
	}
	present := func(names []string) bool {
		for _, a := range argv[1:] {
			if a == "--" {
				return false // what follows is a positional prompt
			}
			for _, n := range names {
				if a == n || strings.HasPrefix(a, n+"=") {
					return true
				}
			}
		}
		return false
	}
	out := []string{argv[0]}
	for _, f := range requiredFlags {
		if present(f.names) {
			continue
		}
		out = append(out, f.names[0])
		if f.value != "" {
			out = append(out, f.value)
		}
	}
	return append(out, argv[1:]...)
}

// ResumeArgs returns argv (as Args made it) asking Claude Code to resume
// session id, unless the operator already gave --resume, --continue or
// --session-id, which then wins.
func ResumeArgs(argv []string, id string) []string {
	if len(argv) == 0 || id == "" {
		return argv
	}
	for _, a := range argv[1:] {
		if a == "--" {
			break
		}
		for _, n := range []string{"--resume", "-r", "--continue", "-c", "--session-id"} {
			if a == n || strings.HasPrefix(a, n+"=") {
				return argv
			}
		}
	}
	out := append([]string{argv[0], "--resume", id}, argv[1:]...)
	return out
}
