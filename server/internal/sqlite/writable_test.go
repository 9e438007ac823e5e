//go:build linux

package sqlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rein-ai/rein/server/internal/disktest"
	"github.com/rein-ai/rein/server/store"
)

// databaseIn writes a database holding session "a" to dir/rein.db and
// returns its path. Not crashed, it is the database file alone, as a copy
// of it or a build before the WAL was kept at a close leaves it; crashed, it is the
// files a process that died while serving left: the database, its WAL
// holding the session, and the WAL index (-shm).
func databaseIn(t *testing.T, dir string, crashed bool) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src.db")
	s, err := Open(context.Background(), src, Options{walLimit: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s, store.CreateSession{Session: newSession("a")})
	path := filepath.Join(dir, "rein.db")
	if crashed {
		for _, suffix := range []string{"", "-wal", "-shm", ".lock"} {
			disktest.CopyFile(t, src+suffix, path+suffix)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !crashed {
		disktest.CopyFile(t, src, path)
		disktest.CopyFile(t, src+".lock", path+".lock")
	}
	return path
}

// A database that cannot be written is refused at Open, naming the file
// that cannot be written and why, whichever of its files it is: SQLite
// would otherwise open it read-only without a word, serve reads, and fail
// every write as if the disk were full. A directory that takes no new
// file is refused too when SQLite must create the WAL in it; with the WAL
// and its index already there, writes succeed and it opens.
func TestUnwritableDatabaseRefused(t *testing.T) {
	for _, tt := range []struct {
		name    string
		crashed bool
		deny    string // the suffix of the path made unwritable; "/" its directory
		want    string // what the error names; "" when Open must succeed
	}{
		{name: "file", deny: "", want: "rein.db: "},
		{name: "file with its WAL", crashed: true, deny: "", want: "rein.db: "},
		{name: "WAL", crashed: true, deny: "-wal", want: "rein.db-wal: "},
		{name: "WAL index", crashed: true, deny: "-shm", want: "rein.db-shm: "},
		{name: "directory", deny: "/", want: "cannot create rein.db-wal"},
		{name: "directory with the WAL in it", crashed: true, deny: "/"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := databaseIn(t, dir, tt.crashed)
			if tt.deny == "/" {
				disktest.Unwritable(t, dir)
			} else {
				disktest.Unwritable(t, path+tt.deny)
			}
			s, err := Open(context.Background(), path, Options{walLimit: 64 << 10})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer s.Close()
				commit(t, s, store.CreateSession{Session: newSession("b")})
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded; want the database refused as unwritable")
			}
			if !errors.Is(err, ErrReadOnly) {
				t.Errorf("Open: %v; want ErrReadOnly", err)
			}
			for _, want := range []string{path, tt.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Open: %q does not say %q", err, want)
				}
			}
		})
	}
}

// A full disk is not a read-only one: the database opens (and serves
// reads) on a disk with no byte free, as a server that crashed on it
// left it, and its writes fail as full, not read-only.
func TestFullDiskStillOpens(t *testing.T) {
	dir := disktest.Mount(t, "4m")
	path := databaseIn(t, dir, true)
	disktest.TakeAll(t, dir)

	s, err := Open(context.Background(), path, Options{walLimit: 64 << 10})
	if err != nil {
		t.Fatalf("Open on a full disk: %v", err)
	}
	defer s.Close()
	if _, err := s.Session(context.Background(), "a"); err != nil {
		t.Fatalf("read on a full disk: %v", err)
	}
	err = s.Commit(context.Background(), []store.Op{store.CreateSession{Session: newSession("b")}})
	if err == nil || !strings.Contains(err.Error(), "full") || errors.Is(err, ErrReadOnly) {
		t.Fatalf("a write on a full disk: %v; want it failed as full", err)
	}
}

// A database file alone (an older build's clean stop removed its WAL and
// its index) must have them created again at the start: on a disk with
// no byte free that cannot be (the index needs a page), and the start
// fails. It must say the disk is full, as a commit's failure does, not
// only "disk I/O error".
func TestFullDiskWithoutTheWALSaysSo(t *testing.T) {
	dir := disktest.Mount(t, "4m")
	path := databaseIn(t, dir, false)
	disktest.TakeAll(t, dir)

	s, err := Open(context.Background(), path, Options{walLimit: 64 << 10})
	if err == nil {
		// Room enough after all for the WAL index: it opens, as after a
		// crash.
		s.Close()
		return
	}
	if !strings.Contains(err.Error(), "free") || errors.Is(err, ErrReadOnly) {
		t.Fatalf("Open on a full disk after a clean stop: %v; want it to say the disk has nothing free", err)
	}
}

// A server stopped cleanly on a full disk starts again on it, as one
// that crashed there does: the store keeps its WAL and WAL index at a
// clean close (SQLite's persistent WAL), so the start has nothing to
// create. SQLite removed them, and the start failed for want of a page.
func TestFullDiskAfterACleanStopStillOpens(t *testing.T) {
	dir := disktest.Mount(t, "4m")
	path := filepath.Join(dir, "rein.db")
	s, err := Open(context.Background(), path, Options{walLimit: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s, store.CreateSession{Session: newSession("a")})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(path + suffix); err != nil {
			t.Errorf("after a clean close: %v; want the file kept", err)
		}
	}
	// Kept checkpointed: the database file alone holds every commit.
	alone := filepath.Join(t.TempDir(), "alone.db")
	disktest.CopyFile(t, path, alone)
	a, err := Open(context.Background(), alone, Options{walLimit: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Session(context.Background(), "a"); err != nil {
		t.Errorf("the database file alone after a clean close: %v; want the session in it", err)
	}
	a.Close()
	disktest.TakeAll(t, dir)
	s, err = Open(context.Background(), path, Options{walLimit: 64 << 10})
	if err != nil {
		t.Fatalf("Open on a full disk after a clean stop: %v", err)
	}
	defer s.Close()
	if _, err := s.Session(context.Background(), "a"); err != nil {
		t.Fatalf("read on a full disk: %v", err)
	}
}
