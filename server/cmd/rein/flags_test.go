package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rein-ai/rein/server/internal/flagdoc"
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
			rows := flagdoc.Table(t, tc.file, tc.heading)
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
				if env := strings.Join(sf.EnvVars, ", "); row.Env != env {
					t.Errorf("--%s: the table says env %q; the flag reads %q", sf.Name, row.Env, env)
				}
				if def := flagdoc.CodeSpan(row.Default); def != sf.Value {
					t.Errorf("--%s: the table's default is %q; the flag's %q", sf.Name, def, sf.Value)
				}
			}
			for name := range rows {
				t.Errorf("--%s has a row but is no global flag", name)
			}
		})
	}
}
