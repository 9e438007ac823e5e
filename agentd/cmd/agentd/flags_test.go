package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// TestFlagTablesMatchTheFlags: both flag tables (README.md's "agentd
// flags", agentd/README.md's "Flags") have a row for every flag, naming
// its environment variable and its true default, and no row for a flag
// that does not exist.
func TestFlagTablesMatchTheFlags(t *testing.T) {
	for _, tc := range []struct{ file, heading string }{
		{"../../../README.md", "## agentd flags"},
		{"../../README.md", "## Flags"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			rows := flagTable(t, tc.file, tc.heading)
			for _, f := range newApp(nil).Flags {
				name := f.Names()[0]
				row, ok := rows[name]
				if !ok {
					t.Errorf("--%s has no row", name)
					continue
				}
				delete(rows, name)
				if env := strings.Join(f.(cli.DocGenerationFlag).GetEnvVars(), ", "); row.env != env {
					t.Errorf("--%s: the table says env %q; the flag reads %q", name, row.env, env)
				}
				if !sameDefault(f, row.def) {
					t.Errorf("--%s: the table's default is %q; the flag's %q", name, row.def, f.(cli.DocGenerationFlag).GetValue())
				}
			}
			for name := range rows {
				t.Errorf("--%s has a row but is no flag", name)
			}
		})
	}
}

// sameDefault says whether a table's default value (the default cell's
// first code span, "" without one) is the flag's.
func sameDefault(f cli.Flag, val string) bool {
	switch f := f.(type) {
	case *cli.DurationFlag:
		d, err := time.ParseDuration(val)
		return err == nil && d == f.Value
	case *cli.IntFlag:
		return val == strconv.Itoa(f.Value)
	case *cli.Int64Flag:
		// A byte count, or a number of MiB ("256 MiB").
		if n, ok := strings.CutSuffix(val, " MiB"); ok {
			m, err := strconv.ParseInt(n, 10, 64)
			return err == nil && m<<20 == f.Value
		}
		return val == strconv.FormatInt(f.Value, 10)
	case *cli.StringFlag:
		if f.Name == "state-dir" {
			// Computed from the environment (defaultStateDir): the
			// table names the rule's first choice.
			return val == "$XDG_STATE_HOME/rein-agentd"
		}
		return val == f.Value
	}
	return false
}

type flagRow struct{ env, def string }

// flagTable reads the table under heading in file: its rows "| `--flag` |
// `ENV` | default | ..." by flag name (without the dashes), the default
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
		def := ""
		if _, rest, ok := strings.Cut(cells[3], "`"); ok {
			def, _, _ = strings.Cut(rest, "`")
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		rows[strings.TrimPrefix(name, "--")] = flagRow{env: strings.Trim(strings.TrimSpace(cells[2]), "`"), def: def}
	}
	return rows
}
