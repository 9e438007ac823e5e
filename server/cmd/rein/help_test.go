package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// reinHelp runs rein without a server (help needs none) and returns what
// it printed and its exit status.
func reinHelp(args ...string) result {
	var out, errOut syncBuffer
	code := run(context.Background(), append([]string{"rein"}, args...), &env{stdout: &out, stderr: &errOut, now: time.Now})
	return result{out.String(), errOut.String(), code}
}

// TestHelpAfterArguments: --help anywhere after a command prints that
// command's help, also after its arguments ("rein watch s1 --help" used
// to look up "s1" as a help topic and exit 1), and a command has no
// hidden "help" subcommand.
func TestHelpAfterArguments(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		usage string
	}{
		{[]string{"watch", "--help"}, "rein watch [command options] ID"},
		{[]string{"watch", "s1", "--help"}, "rein watch [command options] ID"},
		{[]string{"watch", "rm", "-h"}, "rein watch [command options] ID"},
		{[]string{"approve", "s1", "perm-1", "--help"}, "rein approve [command options] ID REQUEST [OPTION]"},
		{[]string{"prompt", "s1", "fix", "it", "--queue", "--help"}, "rein prompt [command options] ID TEXT..."},
		{[]string{"--server", "http://127.0.0.1:1", "create", "s1", "-p", "web", "--help"}, "rein create [command options] ID"},
	} {
		r := reinHelp(tc.args...)
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "USAGE:\n   "+tc.usage+"\n") {
			t.Errorf("rein %s: exit %d, stderr %q, stdout\n%s\nwant usage %q", strings.Join(tc.args, " "), r.code, r.stderr, r.stdout, tc.usage)
		}
	}
}
