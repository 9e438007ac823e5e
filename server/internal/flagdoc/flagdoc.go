// Package flagdoc reads the flag tables of the repository's READMEs, for
// the tests that hold them to the flags the commands define (a table that
// names a wrong environment variable or default misleads every user who
// configures from it).
package flagdoc

import (
	"os"
	"strings"
	"testing"
)

// Row is a flag's row: its environment variable, and its default cell as
// written (trimmed).
type Row struct{ Env, Default string }

// Table reads the first table under heading in file: its rows "|
// `--flag`[, `-f`] | `ENV` | default | ..." by flag name (without the
// dashes).
func Table(t testing.TB, file, heading string) map[string]Row {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s has no %q", file, heading)
	}
	level := heading[:strings.IndexByte(heading, ' ')+1]
	section, _, _ = strings.Cut(section, "\n"+level)
	rows := map[string]Row{}
	for line := range strings.Lines(section) {
		if !strings.HasPrefix(line, "| `--") {
			continue
		}
		cells := strings.Split(strings.ReplaceAll(line, `\|`, "/"), "|")
		if len(cells) < 5 {
			t.Fatalf("%s: row %q has fewer than 4 cells (flag, env, default, meaning)", file, line)
		}
		name := strings.Trim(strings.Fields(cells[1])[0], "`,")
		rows[strings.TrimPrefix(name, "--")] = Row{Env: strings.Trim(strings.TrimSpace(cells[2]), "`"), Default: strings.TrimSpace(cells[3])}
	}
	return rows
}

// CodeSpan returns the text of s's first code span ("" without one).
func CodeSpan(s string) string {
	_, rest, ok := strings.Cut(s, "`")
	if !ok {
		return ""
	}
	span, _, _ := strings.Cut(rest, "`")
	return span
}
