package disktest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size (mount's syntax: "64k", "4m") on a new
// temporary directory until the test ends and returns the directory.
// Mounting needs root (or CAP_SYS_ADMIN): elsewhere the test is skipped
// and says why, except on CI (CI set), where it fails, since CI must run
// it.
func Mount(tb testing.TB, size string) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		cannot(tb, "cannot mount a tmpfs to fill (needs root on Linux): "+err.Error())
	}
	tb.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// TakeAll allocates every free block of the filesystem holding dir to one
// file in it.
func TakeAll(tb testing.TB, dir string) {
	tb.Helper()
	ballast, err := os.Create(filepath.Join(dir, "ballast"))
	if err != nil {
		tb.Fatal(err)
	}
	defer ballast.Close()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Fallocate(int(ballast.Fd()), 0, 0, int64(st.Bavail)*st.Bsize); err != nil {
		tb.Fatalf("fill %s: %v", dir, err)
	}
}

// Unwritable makes path refuse writes until the test ends, in a way that
// binds root too: root ignores file modes, so as root it sets the
// immutable attribute (chattr +i), which it clears again before
// t.TempDir removes the file.
func Unwritable(tb testing.TB, path string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		fi, err := os.Stat(path)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.Chmod(path, fi.Mode().Perm()&^0o222); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = os.Chmod(path, fi.Mode().Perm()) })
		return
	}
	if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
		cannot(tb, "cannot make "+path+" immutable (chattr +i, which binds root; the filesystem may not support it): "+err.Error()+": "+strings.TrimSpace(string(out)))
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("chattr", "-i", path).CombinedOutput(); err != nil {
			tb.Errorf("chattr -i %s: %v: %s", path, err, out)
		}
	})
}
