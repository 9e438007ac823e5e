package fulldisk

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func mount(dir string, size int64) error {
	return syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)+",mode=0700")
}

func unmount(dir string) error { return syscall.Unmount(dir, syscall.MNT_DETACH) }

// breakable makes an ext4 image in a temporary directory, attaches it to
// a loop device and mounts it; cleanups undo each step.
func breakable(tb testing.TB) (dir, dev string, err error) {
	img := filepath.Join(tb.TempDir(), "disk.ext4")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return "", "", err
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		return "", "", err
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("mkfs.ext4: %v: %s", err, out)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		return "", "", fmt.Errorf("losetup: %v", err)
	}
	dev = strings.TrimSpace(string(out))
	tb.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	dir = tb.TempDir()
	if err := syscall.Mount(dev, dir, "ext4", 0, "errors=remount-ro"); err != nil {
		return "", "", fmt.Errorf("mount %s: %w", dev, err)
	}
	tb.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			tb.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir, dev, nil
}

// failExt4 has ext4 record an error on dev, as it does on a failed write
// to its disk: with errors=remount-ro it turns read-only at once.
func failExt4(dev string) error {
	return os.WriteFile("/sys/fs/ext4/"+filepath.Base(dev)+"/trigger_fs_error", []byte("rein test\n"), 0o200)
}
