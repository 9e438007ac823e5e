// Package fulldisk gives tests a real filesystem that runs out of space:
// a small tmpfs, mounted for the test, and a file that fills it. The
// kernel then refuses writes with ENOSPC as a full disk does, which no
// stand-in for the file system would show as faithfully (a write that is
// cut short, a rename that fails, space that returns when a file goes).
package fulldisk

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new temporary directory for
// the test's duration and returns the directory. Mounting needs root (or
// CAP_SYS_ADMIN) on Linux: elsewhere the test is skipped and says why,
// except on CI (CI set), where it fails, since CI must run it.
func Mount(tb testing.TB, size int64) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := mount(dir, size); err != nil {
		msg := "cannot mount a tmpfs to fill (needs root on Linux): " + err.Error()
		if os.Getenv("CI") != "" {
			tb.Fatal(msg)
		}
		tb.Skip("SKIP " + msg)
	}
	tb.Cleanup(func() {
		if err := unmount(dir); err != nil {
			tb.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a file in dir until the filesystem refuses with ENOSPC and
// returns the function that removes it, giving the space back.
func Fill(tb testing.TB, dir string) (free func()) {
	tb.Helper()
	f, err := os.CreateTemp(dir, "filler-")
	if err != nil {
		tb.Fatalf("fill %s: %v", dir, err)
	}
	defer f.Close()
	zeros := make([]byte, 4<<10)
	for {
		if _, err := f.Write(zeros); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				tb.Fatalf("fill %s: %v", dir, err)
			}
			break
		}
	}
	name := f.Name()
	return func() {
		if err := os.Remove(name); err != nil {
			tb.Errorf("free %s: %v", filepath.Base(name), err)
		}
	}
}

// Full reports whether a write of one block to dir fails with ENOSPC.
func Full(tb testing.TB, dir string) bool {
	tb.Helper()
	f, err := os.CreateTemp(dir, "probe-")
	if err != nil {
		return errors.Is(err, syscall.ENOSPC)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	_, err = io.WriteString(f, string(make([]byte, 4<<10)))
	return errors.Is(err, syscall.ENOSPC)
}
