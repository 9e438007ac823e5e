package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// A database this process cannot write must not be served. SQLite opens a
// file it may not write (mode 0444 and another owner, a read-only mount,
// the immutable attribute) read-only without a word, and a WAL or WAL
// index (-shm) it may not write likewise: reads work, /healthz said 200,
// and the first write failed with "attempt to write a readonly database",
// as if the disk were full. A full disk is different: the server starts
// on it and serves reads, and writes resume by themselves once there is
// room (server/README.md, "Durability and a full disk"). Neither check
// below writes a byte, so a full disk passes them.

// ErrReadOnly is wrapped by the error Open returns when the database, its
// WAL or its WAL index cannot be written, or its directory takes no new
// WAL.
var ErrReadOnly = errors.New("the database cannot be written")

// checkWritable returns an error wrapping ErrReadOnly when the writer
// connection cannot write the database. It asks SQLite whether it opened
// the database file read-only, then takes the write lock (BEGIN
// IMMEDIATE, _txlock) and releases it: that opens the WAL and its index,
// and fails with SQLITE_READONLY when either was opened read-only, or
// SQLITE_CANTOPEN when the WAL is missing and cannot be created. It runs
// before the migrations, which would otherwise fail less clearly (or,
// with nothing to migrate, not at all).
func (s *Store) checkWritable(ctx context.Context) error {
	// Connecting applies the DSN's pragmas, journal_mode(WAL) among
	// them, which opens the WAL: a directory that takes no new WAL fails
	// here.
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return s.unwritable(fmt.Errorf("connect: %w", err))
	}
	defer conn.Close()
	var readOnly bool
	if err := conn.Raw(func(dc any) error {
		c, ok := dc.(interface{ IsReadOnly(string) (bool, error) })
		if !ok {
			return nil // TestUnwritableDatabaseRefused says so if the driver lost it
		}
		var err error
		readOnly, err = c.IsReadOnly("main")
		return err
	}); err != nil {
		return fmt.Errorf("check write: %w", err)
	}
	if readOnly {
		return fmt.Errorf("%w: SQLite opened it read-only%s", ErrReadOnly, why(s.path))
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return s.unwritable(fmt.Errorf("begin: %w", err))
	}
	return tx.Rollback()
}

// unwritable returns err wrapped with ErrReadOnly and the reason (why)
// when SQLite's error says the database cannot be written: SQLITE_READONLY,
// or SQLITE_CANTOPEN with a reason found. It returns nil for other errors:
// the migrations and reads that follow meet them as they did before this
// check (a write lock another program holds past the busy timeout, say,
// is no reason to refuse).
func (s *Store) unwritable(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return nil
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_READONLY:
		return fmt.Errorf("%w: %w%s", ErrReadOnly, err, why(s.path))
	case sqlite3.SQLITE_CANTOPEN:
		if note := why(s.path); note != "" {
			return fmt.Errorf("%w: %w%s", ErrReadOnly, err, note)
		}
	}
	return nil
}

// why says, as " (reason)", which of the database's files this process
// cannot open for writing and the system's reason, or that the directory
// takes no new file when the WAL or its index is missing; "" when none of
// that fails.
func why(path string) string {
	missing := false
	for _, p := range []string{path, walPath(path), path + "-shm"} {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		switch {
		case err == nil:
			f.Close()
		case errors.Is(err, fs.ErrNotExist):
			missing = true
		default:
			return " (" + err.Error() + ")"
		}
	}
	if !missing {
		return ""
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".rein-write-check-")
	if err == nil {
		f.Close()
		_ = os.Remove(f.Name())
		return ""
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Sprintf(" (cannot create %s: the directory %s takes no new file: %v)", filepath.Base(walPath(path)), dir, err)
}
