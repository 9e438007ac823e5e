package store

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Migration is one embedded schema migration: a file NNNN_what.sql whose
// number is its version.
type Migration struct {
	Version int
	Name    string // the file name, for errors
	SQL     string
}

// PendingMigrations returns the migrations in fsys's dir/*.sql whose
// version is not in applied, by version. Both backends apply them the
// same way; only the SQL dialect differs. Versions are not required to be
// contiguous with applied: a database may have been migrated by a build
// that had 0003 but not yet 0002.
//
// An applied version with no file here was applied by a newer build, and
// the database is refused: this build would run on a schema it does not
// know, ignoring what the newer one stores (staged events it never
// settles, idempotency keys it never checks, a version column other
// replicas expect every write to bump) and losing or contradicting it.
func PendingMigrations(fsys fs.FS, dir string, applied []int) ([]Migration, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.sql"))
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var out []Migration
	known := make([]int, 0, len(names))
	for _, name := range names {
		base := path.Base(name)
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("bad migration name %s: %w", base, err)
		}
		known = append(known, v)
		if slices.Contains(applied, v) {
			continue
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", base, err)
		}
		out = append(out, Migration{Version: v, Name: base, SQL: string(body)})
	}
	var unknown []string
	for _, v := range slices.Sorted(slices.Values(applied)) {
		if !slices.Contains(known, v) {
			unknown = append(unknown, strconv.Itoa(v))
		}
	}
	if len(unknown) > 0 {
		newest := 0
		if len(known) > 0 {
			newest = slices.Max(known)
		}
		return nil, fmt.Errorf("the database was migrated by a newer rein-server: it has schema version %s, which this build does not know (its newest is %d); run a build at least as new as the one that migrated it", strings.Join(unknown, ", "), newest)
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	return out, nil
}
