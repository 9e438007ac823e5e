package main

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rein-ai/rein/server/internal/flagdoc"
)

// TestFlagTablesMatchTheFlags: both flag tables (README.md's "rein-server
// flags", server/README.md's "Flags and environment") have a row for
// every flag, naming its environment variable and its true default, and
// no row for a flag that does not exist.
func TestFlagTablesMatchTheFlags(t *testing.T) {
	for _, tc := range []struct{ file, heading string }{
		{"../../../README.md", "## rein-server flags"},
		{"../../README.md", "### Flags and environment"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			rows := flagdoc.Table(t, tc.file, tc.heading)
			for _, f := range newApp(io.Discard, io.Discard).Flags {
				name := f.Names()[0]
				row, ok := rows[name]
				if !ok {
					t.Errorf("--%s has no row", name)
					continue
				}
				delete(rows, name)
				df := f.(cli.DocGenerationFlag)
				if env := strings.Join(df.GetEnvVars(), ", "); row.Env != env {
					t.Errorf("--%s: the table says env %q; the flag reads %q", name, row.Env, env)
				}
				if err := sameDefault(f, row.Default); err != "" {
					t.Errorf("--%s: %s", name, err)
				}
			}
			for name := range rows {
				t.Errorf("--%s has a row but is no flag", name)
			}
		})
	}
}

// sameDefault compares a table's default cell (its first `code` span is
// the value; none means no default) with the flag's, "" when they agree.
func sameDefault(f cli.Flag, cell string) string {
	val := ""
	if _, rest, ok := strings.Cut(cell, "`"); ok {
		val, _, _ = strings.Cut(rest, "`")
	}
	var want string
	switch f := f.(type) {
	case *cli.DurationFlag:
		d, err := time.ParseDuration(val)
		if err != nil || d != f.Value {
			return "the table says " + strconv.Quote(cell) + "; the default is " + f.Value.String()
		}
		return ""
	case *cli.IntFlag:
		want = strconv.Itoa(f.Value)
	case *cli.Int64Flag:
		want = strconv.FormatInt(f.Value, 10)
	case *cli.BoolFlag:
		want = strconv.FormatBool(f.Value)
	case *cli.StringSliceFlag:
		if f.Value != nil {
			want = strings.Join(f.Value.Value(), ",")
		}
	case *cli.StringFlag:
		want = f.Value
		if f.Name == "memory-limit" {
			// Unset means the default limit (memoryLimit).
			n, err := parseSize(val)
			if err != nil || n != defaultMemoryLimit {
				return "the table says " + strconv.Quote(cell) + "; the default is " + strconv.Itoa(defaultMemoryLimit) + " bytes"
			}
			return ""
		}
	default:
		return "no comparison for this kind of flag"
	}
	if val != want {
		return "the table says " + strconv.Quote(cell) + "; the default is " + strconv.Quote(want)
	}
	return ""
}
