package sqlite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// A full disk does not always say so. SQLite reports "database or disk is
// full (13)" when a page cannot be written, but "disk I/O error (4874)"
// when the WAL index cannot grow, and an operator reading /healthz or the
// log should not have to guess which disk, or whether it is full. So an
// error SQLite gives for a full or failing disk (SQLITE_FULL, SQLITE_IOERR
// and its extended codes) carries the free space of the database's disk.

// A disk that turned read-only (ext4 remounts itself so after an error)
// fails writes with "disk I/O error (778)" while showing free space, so
// the note says that too: the database's directory no longer takes a new
// file.

// diskError is such an error, with what is known of the disk holding its
// database. It does not unwrap: the server reports an error's root cause
// (Health), and the root worth reporting is the error with its disk's
// state; nothing looks into SQLite's error past it.
type diskError struct {
	msg  string // the whole chain's, operations first
	note string // diskNote's
}

func (e *diskError) Error() string { return e.msg + " (" + e.note + ")" }

// diskNote says what is known of the disk holding dir: whether it takes
// writes (a new file in dir), and its free space; "" when neither can be
// told.
func diskNote(dir string) string {
	var ro string
	f, err := os.CreateTemp(dir, ".rein-write-check-")
	switch {
	case err == nil:
		f.Close()
		_ = os.Remove(f.Name())
	case errors.Is(err, syscall.EROFS):
		ro = "is read-only"
	}
	free, ok := freeSpace(dir)
	switch {
	case ok && ro != "":
		return fmt.Sprintf("the disk holding %s %s, with %s free", dir, ro, bytesString(free))
	case ok:
		return fmt.Sprintf("the disk holding %s has %s free", dir, bytesString(free))
	case ro != "":
		return fmt.Sprintf("the disk holding %s %s", dir, ro)
	}
	return ""
}

// withDiskNote adds what is known of the database's disk (diskNote) to
// err when err is SQLite's for a full or failing disk. It returns other errors (and
// all errors of an in-memory database) as they are.
func (s *Store) withDiskNote(err error) error {
	var se *sqlite.Error
	if s.memory || !errors.As(err, &se) {
		return err
	}
	if code := se.Code() & 0xff; code != sqlite3.SQLITE_FULL && code != sqlite3.SQLITE_IOERR {
		return err
	}
	note := diskNote(filepath.Dir(s.path))
	if what := ioerrWhat(se.Code()); what != "" {
		note = strings.TrimSuffix(what+"; "+note, "; ")
	}
	if note == "" {
		return err
	}
	return &diskError{msg: err.Error(), note: note}
}

// ioerrWhat names the operation behind SQLite's extended I/O error code,
// which its message gives only as a number ("disk I/O error (1034)"); ""
// for the codes an operator is unlikely to meet.
func ioerrWhat(code int) string {
	switch code {
	case sqlite3.SQLITE_IOERR_READ:
		return "a read failed"
	case sqlite3.SQLITE_IOERR_SHORT_READ:
		return "a read came back short"
	case sqlite3.SQLITE_IOERR_WRITE:
		return "a write failed"
	case sqlite3.SQLITE_IOERR_FSYNC:
		return "an fsync failed: the disk did not confirm that the writes are on it"
	case sqlite3.SQLITE_IOERR_DIR_FSYNC:
		return "an fsync of the database's directory failed"
	case sqlite3.SQLITE_IOERR_TRUNCATE:
		return "a truncate failed"
	case sqlite3.SQLITE_IOERR_SHMSIZE:
		return "the WAL index (-shm) could not grow"
	}
	return ""
}

// bytesString writes n in the largest binary unit that keeps it at 1 or
// more, with one decimal.
func bytesString(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[i])
}
