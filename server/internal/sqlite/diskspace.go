package sqlite

import (
	"errors"
	"fmt"
	"path/filepath"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// A full disk does not always say so. SQLite reports "database or disk is
// full (13)" when a page cannot be written, but "disk I/O error (4874)"
// when the WAL index cannot grow, and an operator reading /healthz or the
// log should not have to guess which disk, or whether it is full. So an
// error SQLite gives for a full or failing disk (SQLITE_FULL, SQLITE_IOERR
// and its extended codes) carries the free space of the database's disk.

// diskError is such an error, with the free space of the disk holding dir.
// It does not unwrap: the server reports an error's root cause (Health),
// and the root worth reporting is the error with its disk's free space;
// nothing looks into SQLite's error past it.
type diskError struct {
	msg  string // the whole chain's, operations first
	dir  string
	free uint64
}

func (e *diskError) Error() string {
	return fmt.Sprintf("%s (the disk holding %s has %s free)", e.msg, e.dir, bytesString(e.free))
}

// withDiskSpace adds the free space of the database's disk to err when
// err is SQLite's for a full or failing disk. It returns other errors (and
// all errors of an in-memory database) as they are.
func (s *Store) withDiskSpace(err error) error {
	var se *sqlite.Error
	if s.memory || !errors.As(err, &se) {
		return err
	}
	if code := se.Code() & 0xff; code != sqlite3.SQLITE_FULL && code != sqlite3.SQLITE_IOERR {
		return err
	}
	dir := filepath.Dir(s.path)
	free, ok := freeSpace(dir)
	if !ok {
		return err
	}
	return &diskError{msg: err.Error(), dir: dir, free: free}
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
