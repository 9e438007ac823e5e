// Package disktest gives the server's tests real disks that misbehave: a
// small tmpfs to fill (writes fail with ENOSPC), every free block of one
// taken, and a file that refuses writes even to root. A stand-in for the
// file system would not show what SQLite and the kernel do then.
// (agentd/internal/fulldisk is agentd's, in a module of its own.)
package disktest

import (
	"errors"
	"io"
	"os"
	"testing"
)

// CopyFile copies from to to; a missing from leaves to missing (removed),
// as when a database's WAL is not there to copy.
func CopyFile(tb testing.TB, from, to string) {
	tb.Helper()
	in, err := os.Open(from)
	if errors.Is(err, os.ErrNotExist) {
		_ = os.Remove(to)
		return
	}
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
}

// cannot skips the test, saying why, or fails it on CI (CI set), which
// must run it.
func cannot(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatal(why)
	}
	tb.Skip("SKIP " + why)
}
