package main

import (
	"context"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// TestVersionAndHelp: --version prints the version the build set (what
// -ldflags -X main.version does) or "dev" with build info; --help shows
// the README's usage line (all four protocols) and exactly the flags of
// README.md's "agentd flags" table.
func TestVersionAndHelp(t *testing.T) {
	run := func(args ...string) string {
		t.Helper()
		var out strings.Builder
		app := newApp(nil)
		app.Writer = &out
		if err := app.RunContext(context.Background(), append([]string{"agentd"}, args...)); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out.String()
	}
	if got := run("--version"); !strings.HasPrefix(got, "agentd version dev") {
		t.Errorf("--version printed %q", got)
	}
	old := version
	version = "v1.2.3"
	got := run("--version")
	version = old
	if got != "agentd version v1.2.3\n" {
		t.Errorf("--version with the build's version printed %q", got)
	}

	help := run("--help")
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "## agentd flags")
	section, _, _ = strings.Cut(section, "\n## ")
	usage := regexp.MustCompile("(?m)^`(agentd --server[^`]*)`$").FindStringSubmatch(section)
	if usage == nil {
		t.Fatal("README.md's agentd flags section has no usage line")
	}
	if !strings.Contains(help, usage[1]) {
		t.Errorf("--help lacks the README's usage line %q:\n%s", usage[1], help)
	}
	if !strings.Contains(usage[1], "native|acp|claude|codex") {
		t.Errorf("the usage line %q does not list the four protocols", usage[1])
	}
	flags := flagsIn(help, `(?m)^\s+(--[a-z-]+)`)
	flags = slices.DeleteFunc(flags, func(s string) bool { return s == "--help" || s == "--version" })
	table := flagsIn(section, "(?m)^\\| `(--[a-z-]+)`")
	if strings.Join(flags, " ") != strings.Join(table, " ") {
		t.Errorf("--help flags %v\nREADME table  %v", flags, table)
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
