package codex

import "testing"

func TestCommandTitle(t *testing.T) {
	for _, tc := range []struct {
		name, command string
		actions       []commandAction
		want          string
	}{
		{"whole command, not the first action", `/bin/bash -lc 'echo hi && ls'`, []commandAction{{Type: "listFiles", Command: "ls"}}, "echo hi && ls"},
		{"one action", `/bin/bash -c 'echo hello; sleep 0.5; echo bye'`, []commandAction{{Type: "unknown", Command: "echo hello; sleep 0.5; echo bye"}}, "echo hello; sleep 0.5; echo bye"},
		{"quotes inside", `bash -lc 'echo '"'"'a b'"'"' > f'`, nil, `echo 'a b' > f`},
		{"double quotes", `/usr/bin/zsh -lc "echo \"\$HOME\""`, nil, `echo "$HOME"`},
		{"no wrapper", `ls -la`, []commandAction{{Type: "listFiles", Command: "ls -la"}}, "ls -la"},
		{"not a shell", `/usr/bin/python3 -c 'print(1)'`, nil, `/usr/bin/python3 -c 'print(1)'`},
		{"open quote", `bash -lc 'echo`, nil, `bash -lc 'echo`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := commandTitle(tc.command, tc.actions); got != tc.want {
				t.Errorf("commandTitle(%q) = %q, want %q", tc.command, got, tc.want)
			}
		})
	}
}
