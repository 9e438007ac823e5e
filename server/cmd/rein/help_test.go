package main

import (
	"context"
	"os"
	"regexp"
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

// TestHelpWithoutCommand: rein alone prints its help and exits 0 (an
// argument that is no command is a usage error, see TestErrors).
func TestHelpWithoutCommand(t *testing.T) {
	r := reinHelp()
	if r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "NAME:\n   rein - watch and steer Rein sessions\n") {
		t.Errorf("rein: %+v", r)
	}
}

// TestHelpForEveryCommand: every command form in server/README.md's
// table ("rein inbox approve REF|REQUEST", ...) has its own help, with or
// without arguments before --help. "rein inbox approve --help" used to
// print "No help topic for 'approve'": approve and deny were words the
// inbox command parsed, not subcommands.
func TestHelpForEveryCommand(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "## Command line: `rein`")
	section, _, _ = strings.Cut(section, "\n## ")
	var forms []string
	for _, m := range regexp.MustCompile("(?m)^\\| `rein ((?:[a-z]+ ?)+)").FindAllStringSubmatch(section, -1) {
		forms = append(forms, strings.TrimSpace(m[1]))
	}
	if len(forms) < 12 {
		t.Fatalf("found only the command forms %q in server/README.md", forms)
	}
	for _, form := range forms {
		for _, args := range [][]string{{"--help"}, {"-h", "1", "perm-1"}, {"1", "perm-1", "--help"}} {
			r := reinHelp(append(strings.Fields(form), args...)...)
			if r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "NAME:\n   rein "+form+" - ") || !strings.Contains(r.stdout, "USAGE:\n   rein "+form+" ") {
				t.Errorf("rein %s %s: exit %d, stderr %q, stdout\n%s", form, strings.Join(args, " "), r.code, r.stderr, r.stdout)
			}
		}
	}
	// rein inbox --help lists its subcommands and nothing else.
	r := reinHelp("inbox", "--help")
	_, cmds, _ := strings.Cut(r.stdout, "COMMANDS:\n")
	cmds, _, _ = strings.Cut(cmds, "\n\n")
	if got := regexp.MustCompile(`(?m)^   (\S+)`).FindAllString(cmds, -1); strings.Join(got, ",") != "   approve,   deny" {
		t.Errorf("rein inbox --help lists commands %q:\n%s", got, r.stdout)
	}
}
