package crashfs

import (
	"errors"
	"os"
	"testing"
)

// MountTemp mounts a new FS on a new temporary directory for the test and
// unmounts it at cleanup (after the test's own cleanups registered later,
// such as stopping the processes that use it). Where FUSE cannot be
// mounted (no /dev/fuse, not root) the test is skipped and says why; on
// CI (CI set) it fails instead, since CI must run it.
func MountTemp(t testing.TB) (*FS, string) {
	t.Helper()
	c, dir := New(), t.TempDir()
	if err := c.Mount(dir); err != nil {
		if errors.Is(err, ErrUnavailable) && os.Getenv("CI") == "" {
			t.Skip("SKIP " + err.Error())
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return c, dir
}
