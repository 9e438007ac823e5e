package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/rein-ai/rein/server/store"
	"github.com/rein-ai/rein/server/store/storetest"
)

// A second Open of a locked file fails naming the file and the holder's
// pid, until the first Store closes.
func TestSecondOpenRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rein.db")
	first, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), path, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v; want ErrLocked", err)
	}
	for _, want := range []string{path, fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatalf("Open after the holder closed: %v", err)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
}

// Sync selects the synchronous pragma on every connection; FULL unless
// told otherwise. An unknown mode is refused by name.
func TestSyncMode(t *testing.T) {
	for _, tt := range []struct {
		sync string
		want int // PRAGMA synchronous: 1 NORMAL, 2 FULL
	}{{"", 2}, {SyncFull, 2}, {SyncNormal, 1}} {
		t.Run(tt.sync, func(t *testing.T) {
			s, err := Open(context.Background(), filepath.Join(t.TempDir(), "rein.db"), Options{Sync: tt.sync})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got int
			if err := s.w.GetContext(context.Background(), &got, `PRAGMA synchronous`); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("writer synchronous = %d; want %d", got, tt.want)
			}
		})
	}
	if _, err := Open(context.Background(), filepath.Join(t.TempDir(), "rein.db"), Options{Sync: "off"}); err == nil || !strings.Contains(err.Error(), `sync "off"`) {
		t.Errorf("Sync off: %v; want an error naming it", err)
	}
}

// A full database (max_page_count reached: SQLITE_FULL, as a full disk
// gives) fails commits and CheckWrite but still answers reads; once there
// is room again both succeed without reopening.
func TestFullDatabase(t *testing.T) {
	ctx := context.Background()
	s := openFile(t, filepath.Join(t.TempDir(), "rein.db"))
	commit(t, s, store.CreateSession{Session: newSession("a")})
	if err := s.CheckWrite(ctx); err != nil {
		t.Fatalf("CheckWrite with room: %v", err)
	}
	var pages int
	if err := s.w.GetContext(ctx, &pages, `PRAGMA page_count`); err != nil {
		t.Fatal(err)
	}
	// The writer pool has one connection, so the limit sticks to it.
	if _, err := s.w.ExecContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, pages)); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 512<<10) // more than the free pages CheckWrite left
	err := s.Commit(ctx, []store.Op{store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: 1, Body: []byte(`{"t":"` + big + `"}`)}}}})
	if err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("commit into a full database: %v; want a full error", err)
	}
	// The server reports an error's root cause (Health): there, the
	// error names the disk and its free space.
	root := err
	for errors.Unwrap(root) != nil {
		root = errors.Unwrap(root)
	}
	dir := filepath.Dir(s.path)
	for _, want := range []string{"commit 1 ops", "database or disk is full (13)", "the disk holding " + dir + " has ", " free)"} {
		if !strings.Contains(root.Error(), want) {
			t.Errorf("root cause %q does not say %q", root, want)
		}
	}
	if err := s.CheckWrite(ctx); err == nil || !strings.Contains(err.Error(), "the disk holding "+dir) {
		t.Fatalf("CheckWrite on a full database: %v; want a full error naming the disk", err)
	}
	if rec, err := s.Session(ctx, "a"); err != nil || rec.ID != "a" {
		t.Fatalf("read from a full database: %+v, %v", rec, err)
	}
	if _, err := s.w.ExecContext(ctx, `PRAGMA max_page_count = 1073741823`); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckWrite(ctx); err != nil {
		t.Fatalf("CheckWrite with room again: %v", err)
	}
	commit(t, s, store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: 1, Body: []byte(`{"t":"` + big + `"}`)}}})
	if evs, err := s.Events(ctx, "a"); err != nil || len(evs) != 1 {
		t.Fatalf("events after recovery: %d, %v", len(evs), err)
	}
}

// A database made by a build that had only the first migration is
// migrated on Open and then passes the whole contract.
func TestConformanceOnMigratedFile(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		path := filepath.Join(t.TempDir(), "old.db")
		old, err := sqlx.Open("sqlite", "file:"+path+"?"+pragmas)
		if err != nil {
			t.Fatal(err)
		}
		first, err := migrations.ReadFile("migrations/0001_init.sql")
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			string(first),
			`CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL DEFAULT (unixepoch()))`,
			`INSERT INTO schema_version (version) VALUES (1)`,
		} {
			if _, err := old.Exec(q); err != nil {
				t.Fatalf("%.60s: %v", q, err)
			}
		}
		if err := old.Close(); err != nil {
			t.Fatal(err)
		}
		return openFile(t, path)
	})
}
