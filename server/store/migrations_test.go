package store

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
)

func TestPendingMigrations(t *testing.T) {
	fsys := fstest.MapFS{
		"m/0010_later.sql": {Data: []byte("ten")},
		"m/0002_two.sql":   {Data: []byte("two")},
		"m/0001_init.sql":  {Data: []byte("one")},
		"m/README.md":      {Data: []byte("not a migration")},
	}
	for _, tc := range []struct {
		name    string
		applied []int
		want    string
	}{
		{"fresh database: all, by version (10 after 2)", nil, "1:0001_init.sql:one 2:0002_two.sql:two 10:0010_later.sql:ten"},
		{"a gap is filled", []int{1, 10}, "2:0002_two.sql:two"},
		{"up to date", []int{1, 2, 10}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PendingMigrations(fsys, "m", tc.applied)
			if err != nil {
				t.Fatal(err)
			}
			var parts []string
			for _, m := range got {
				parts = append(parts, fmt.Sprintf("%d:%s:%s", m.Version, m.Name, m.SQL))
			}
			if s := strings.Join(parts, " "); s != tc.want {
				t.Errorf("got %q, want %q", s, tc.want)
			}
		})
	}
	// A version this build has no file for was applied by a newer build:
	// running on a schema it does not know could lose what that build
	// stores, so the database is refused, naming the versions.
	_, err := PendingMigrations(fsys, "m", []int{1, 2, 10, 12, 11})
	if err == nil || !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), "11, 12") || !strings.Contains(err.Error(), "newest is 10") {
		t.Errorf("versions 11 and 12 applied by a newer build: err = %v; want a refusal naming them", err)
	}
	_, err = PendingMigrations(fstest.MapFS{"m/x_bad.sql": {}}, "m", nil)
	if err == nil || !strings.Contains(err.Error(), "x_bad.sql") {
		t.Errorf("a migration without a number: err = %v; want it named", err)
	}
}
