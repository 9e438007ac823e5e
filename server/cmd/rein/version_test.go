package main

import (
	"context"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestVersionAndHelp: --version prints the version the build set (what
// -ldflags -X main.version does) or "dev" with build info; --help lists
// the global flags and the commands of server/README.md's tables.
func TestVersionAndHelp(t *testing.T) {
	run := func(args ...string) string {
		t.Helper()
		var out, errOut strings.Builder
		if code := run(context.Background(), append([]string{"rein"}, args...), &env{stdout: &out, stderr: &errOut, now: time.Now}); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut.String())
		}
		return out.String()
	}
	if got := run("--version"); !strings.HasPrefix(got, "rein version dev") {
		t.Errorf("--version printed %q", got)
	}
	old := version
	version = "v1.2.3"
	got := run("--version")
	version = old
	if got != "rein version v1.2.3\n" {
		t.Errorf("--version with the build's version printed %q", got)
	}

	help := run("--help")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "## Command line: `rein`")
	section, _, _ = strings.Cut(section, "\n## ")
	list := func(s, re string) []string {
		var out []string
		for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(s, -1) {
			out = append(out, m[1])
		}
		sort.Strings(out)
		return slices.Compact(out)
	}
	flags := slices.DeleteFunc(list(help, `(?m)^\s+(--[a-z-]+)`), func(s string) bool { return s == "--help" || s == "--version" })
	if want := list(section, "(?m)^\\| `(--[a-z-]+)`"); strings.Join(flags, " ") != strings.Join(want, " ") {
		t.Errorf("--help global flags %v\nREADME table %v", flags, want)
	}
	_, cmdHelp, _ := strings.Cut(help, "COMMANDS:")
	cmdHelp, _, _ = strings.Cut(cmdHelp, "GLOBAL OPTIONS:")
	cmds := list(cmdHelp, `(?m)^\s{3}([a-z]+)[\s,]`)
	if want := list(section, "(?m)^\\| `rein ([a-z]+)"); strings.Join(cmds, " ") != strings.Join(want, " ") {
		t.Errorf("--help commands %v\nREADME table %v", cmds, want)
	}
}
