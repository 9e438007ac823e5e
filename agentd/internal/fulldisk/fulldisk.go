// Package fulldisk gives tests a real filesystem that misbehaves as disks
// do: a small tmpfs that a file fills (writes fail with ENOSPC), and an
// ext4 image that turns read-only as after a disk error (EROFS). No
// stand-in for the file system would show as faithfully what the kernel
// does then (a write cut short, a rename that fails, space that returns
// when a file goes, files open for writing that stop taking writes).
package fulldisk

import (
	"errors"
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
		cannot(tb, "cannot mount a tmpfs to fill (needs root on Linux): "+err.Error())
	}
	tb.Cleanup(func() {
		if err := unmount(dir); err != nil {
			tb.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
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

// Breakable mounts a small ext4 filesystem (an image on a loop device,
// mounted errors=remount-ro) for the test and returns its directory and
// the function that makes it fail as a disk does: ext4 records an error
// and remounts itself read-only, and every write after that fails with
// EROFS, files open for writing included. It needs root, losetup and
// mkfs.ext4 on Linux: elsewhere the test is skipped and says why, but on
// CI it fails.
func Breakable(tb testing.TB) (dir string, fail func()) {
	tb.Helper()
	dir, dev, err := breakable(tb)
	if err != nil {
		cannot(tb, "cannot mount an ext4 image to break (needs root, losetup and mkfs.ext4 on Linux): "+err.Error())
	}
	return dir, func() {
		if err := failExt4(dev); err != nil {
			tb.Fatalf("break %s: %v", dir, err)
		}
	}
}

// Unreadable mounts a small ext4 filesystem (an image on a loop device)
// for the test and returns its directory and the function that makes a
// file on it unreadable from byte off on, as a bad sector or a failing
// network disk does: reads there fail with EIO, from the kernel. It
// drops the file's cached pages and cuts the loop device short where the
// file's data at off (rounded down to a page) lies; the filesystem has no
// journal, so nothing else the kernel writes lies past the cut. The
// returned function makes the file readable again, unchanged if nobody
// wrote to it. The file must be the last one written to the filesystem
// (its data the last on the device). It needs root, losetup and
// mkfs.ext4 on Linux: elsewhere the test is skipped and says why, but
// on CI it fails.
func Unreadable(tb testing.TB) (dir string, fail func(path string, off int64) (repair func())) {
	tb.Helper()
	dir, dev, img, err := unreadable(tb)
	if err != nil {
		cannot(tb, "cannot mount an ext4 image to break (needs root, losetup and mkfs.ext4 on Linux): "+err.Error())
	}
	return dir, func(path string, off int64) func() {
		tb.Helper()
		repair, err := cutAt(dev, img, path, off)
		if err != nil {
			tb.Fatalf("make %s unreadable: %v", path, err)
		}
		return func() {
			tb.Helper()
			if err := repair(); err != nil {
				tb.Fatalf("make %s readable again: %v", path, err)
			}
		}
	}
}
