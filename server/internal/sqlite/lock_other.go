//go:build !unix

package sqlite

import "errors"

// ErrLocked is wrapped by the error Open returns when another Store holds
// the database file. Without flock (not a Unix system) files are not
// locked, and it never is.
var ErrLocked = errors.New("database is in use by another rein-server")

type fileLock struct{}

// lockFile does nothing where flock does not exist: one server per file
// is then the operator's job.
func lockFile(string) (*fileLock, error) { return &fileLock{}, nil }

func (*fileLock) release() error { return nil }
