//go:build unix

package sqlite

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// One server per database file. SQLite's own locks make two processes on
// one file safe for SQLite, not for rein-server: each keeps the sessions
// in memory, so two would answer from contradictory views (one creates a
// session the other's DELETE calls 404). Open therefore takes an exclusive
// flock on "<db>.lock" next to the database and writes its pid there, so
// the refusal can name the process that holds it. The kernel drops the
// lock when the process dies, so a crash never leaves a stale lock; the
// file itself stays (removing it would race with the next Open).

// fileLock is a held lock on a database file.
type fileLock struct {
	f *os.File
}

// ErrLocked is wrapped by the error Open returns when another Store
// (in this process or another) holds the database file.
var ErrLocked = errors.New("database is in use by another rein-server")

// lockFile locks path for this process.
func lockFile(path string) (*fileLock, error) {
	name := path + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "unknown pid"
		if b, rerr := os.ReadFile(name); rerr == nil {
			if pid, perr := strconv.Atoi(string(bytes.TrimSpace(b))); perr == nil {
				holder = "pid " + strconv.Itoa(pid)
			}
		}
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by %s (lock file %s); run one rein-server per database file", ErrLocked, path, holder, name)
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	// The pid is for the message above only: on a full disk writing it
	// may fail, and the lock holds regardless.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &fileLock{f: f}, nil
}

// release unlocks and closes the lock file.
func (l *fileLock) release() error {
	err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("unlock %s: %w", l.f.Name(), err)
	}
	return nil
}
