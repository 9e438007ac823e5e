package main

import (
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// TestVersionAndHelp: --version prints the version the build set (what
// -ldflags -X main.version does) or "dev" with build info; --help lists
// exactly the flags of README.md's "rein-server flags" table.
func TestVersionAndHelp(t *testing.T) {
	for _, tc := range []struct{ set, want string }{{"", "rein-server version dev"}, {"v1.2.3", "rein-server version v1.2.3\n"}} {
		if tc.set != "" {
			old := version
			version = tc.set
			t.Cleanup(func() { version = old })
		}
		var out, errOut strings.Builder
		if err := newApp(&out, &errOut).Run([]string{"rein-server", "--version"}); err != nil {
			t.Fatalf("--version: %v (%s)", err, errOut.String())
		}
		if !strings.HasPrefix(out.String(), tc.want) {
			t.Errorf("--version printed %q, want %q...", out.String(), tc.want)
		}
	}
	var out, errOut strings.Builder
	if err := newApp(&out, &errOut).Run([]string{"rein-server", "--help"}); err != nil {
		t.Fatalf("--help: %v", err)
	}
	help := flagsIn(out.String(), `(?m)^\s+(--[a-z-]+)`)
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "## rein-server flags")
	section, _, _ = strings.Cut(section, "\n## ")
	table := flagsIn(section, "(?m)^\\| `(--[a-z-]+)`")
	help = without(help, "--help", "--version")
	if strings.Join(help, " ") != strings.Join(table, " ") {
		t.Errorf("--help flags %v\nREADME table  %v", help, table)
	}
}

func flagsIn(s, re string) []string {
	var out []string
	for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	sort.Strings(out)
	return out
}

func without(list []string, drop ...string) []string {
	var out []string
	for _, s := range list {
		if !slices.Contains(drop, s) {
			out = append(out, s)
		}
	}
	return out
}
