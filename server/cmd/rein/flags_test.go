package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// TestFlagTablesMatchTheFlags: both tables of rein's global flags
// (README.md's "Command line", server/README.md's "Command line: rein")
// have a row for every global flag, naming its environment variable and
// its true default, and no row for a flag that does not exist.
func TestFlagTablesMatchTheFlags(t *testing.T) {
	app := buildApp(&env{stdout: os.Stdout, stderr: os.Stderr, now: time.Now})
	for _, tc := range []struct{ file, heading string }{
		{"../../../README.md", "## Command line"},
		{"../../README.md", "## Command line: `rein`"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			rows := flagTable(t, tc.file, tc.heading)
			for _, f := range app.Flags {
				sf, ok := f.(*cli.StringFlag)
				if !ok {
					t.Fatalf("--%s: only string flags are compared", f.Names()[0])
				}
				row, ok := rows[sf.Name]
				if !ok {
					t.Errorf("--%s has no row", sf.Name)
					continue
				}
				delete(rows, sf.Name)
				if env := strings.Join(sf.EnvVars, ", "); row.env != env {
					t.Errorf("--%s: the table says env %q; the flag reads %q", sf.Name, row.env, env)
				}
				if row.def != sf.Value {
					t.Errorf("--%s: the table's default is %q; the flag's %q", sf.Name, row.def, sf.Value)
				}
			}
			for name := range rows {
				t.Errorf("--%s has a row but is no global flag", name)
			}
		})
	}
}

type flagRow struct{ env, def string }

// flagTable reads the first table under heading in file: its rows "|
// `--flag`[, `-f`] | `ENV` | `default` | ..." by flag name, the default
// cell's first code span as the value ("" without one).
func flagTable(t *testing.T, file, heading string) map[string]flagRow {
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
	rows := map[string]flagRow{}
	for line := range strings.Lines(section) {
		if !strings.HasPrefix(line, "| `--") {
			continue
		}
		cells := strings.Split(strings.ReplaceAll(line, `\|`, "/"), "|")
		if len(cells) < 5 {
			t.Fatalf("%s: row %q has fewer than 4 cells (flag, env, default, meaning)", file, line)
		}
		name := strings.Trim(strings.Fields(cells[1])[0], "`,")
		def := ""
		if _, rest, ok := strings.Cut(cells[3], "`"); ok {
			def, _, _ = strings.Cut(rest, "`")
		}
		rows[strings.TrimPrefix(name, "--")] = flagRow{env: strings.Trim(strings.TrimSpace(cells[2]), "`"), def: def}
	}
	return rows
}
