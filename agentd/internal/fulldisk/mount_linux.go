package fulldisk

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

func mount(dir string, size int64) error {
	return syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)+",mode=0700")
}

func unmount(dir string) error { return syscall.Unmount(dir, syscall.MNT_DETACH) }

// loopImage makes an ext4 image of 16 MiB in a temporary directory
// (mkfs.ext4 with extra options), attaches it to a loop device and
// mounts it with mountOpts; cleanups undo each step.
func loopImage(tb testing.TB, mkfsOpts []string, mountOpts string) (dir, dev, img string, err error) {
	img = filepath.Join(tb.TempDir(), "disk.ext4")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return "", "", "", err
	}
	if err := os.Truncate(img, imageSize); err != nil {
		return "", "", "", err
	}
	args := append(append([]string{"-q", "-F"}, mkfsOpts...), img)
	if out, err := exec.Command("mkfs.ext4", args...).CombinedOutput(); err != nil {
		return "", "", "", fmt.Errorf("mkfs.ext4: %v: %s", err, out)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		return "", "", "", fmt.Errorf("losetup: %v", err)
	}
	dev = strings.TrimSpace(string(out))
	tb.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	dir = tb.TempDir()
	if err := syscall.Mount(dev, dir, "ext4", 0, mountOpts); err != nil {
		return "", "", "", fmt.Errorf("mount %s: %w", dev, err)
	}
	tb.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			tb.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir, dev, img, nil
}

const imageSize = 16 << 20

// unreadable is an ext4 without a journal (whose writes could lie past
// the cut), mounted errors=continue: a read error must not turn it
// read-only, which would hide what the reader then writes.
func unreadable(tb testing.TB) (dir, dev, img string, err error) {
	return loopImage(tb, []string{"-O", "^has_journal"}, "errors=continue")
}

// cutAt drops path's cached pages and cuts the loop device dev (over
// img) at the device offset of path's data at off, rounded down to a
// page; repair grows it back.
func cutAt(dev, img, path string, off int64) (repair func() error, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	page := int64(os.Getpagesize())
	off -= off % page
	phys, err := physical(f, off)
	if err != nil {
		return nil, err
	}
	// Dirty pages would stay: fiemap synced the file.
	if _, _, e := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, 4 /* POSIX_FADV_DONTNEED */, 0, 0); e != 0 {
		return nil, fmt.Errorf("fadvise: %w", e)
	}
	resize := func(size int64) error {
		if err := os.Truncate(img, size); err != nil {
			return err
		}
		if out, err := exec.Command("losetup", "-c", dev).CombinedOutput(); err != nil {
			return fmt.Errorf("losetup -c: %v: %s", err, out)
		}
		return nil
	}
	// Truncating the image loses what lies past the cut: kept here
	// to be written back.
	tail := make([]byte, imageSize-phys)
	im, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	if _, err := im.ReadAt(tail, phys); err != nil {
		return nil, err
	}
	if err := resize(phys); err != nil {
		return nil, err
	}
	return func() error {
		im, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer im.Close()
		if _, err := im.WriteAt(tail, phys); err != nil {
			return err
		}
		return resize(imageSize)
	}, nil
}

// physical is the device offset of f's byte off (FS_IOC_FIEMAP, after
// syncing the file).
func physical(f *os.File, off int64) (int64, error) {
	const (
		fsIocFiemap    = 0xC020660B
		fiemapFlagSync = 0x1
		extents        = 32
		extentSize     = 56
	)
	buf := make([]byte, 32+extents*extentSize)
	le := binary.LittleEndian
	le.PutUint64(buf[0:], 0)               // fm_start
	le.PutUint64(buf[8:], ^uint64(0))      // fm_length
	le.PutUint32(buf[16:], fiemapFlagSync) // fm_flags
	le.PutUint32(buf[24:], extents)        // fm_extent_count
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
		return 0, fmt.Errorf("fiemap: %w", e)
	}
	n := int(le.Uint32(buf[20:]))
	for i := range min(n, extents) {
		e := buf[32+i*extentSize:]
		logical, phys, length := int64(le.Uint64(e[0:])), int64(le.Uint64(e[8:])), int64(le.Uint64(e[16:]))
		if off >= logical && off < logical+length {
			return phys + off - logical, nil
		}
	}
	return 0, fmt.Errorf("no extent holds byte %d", off)
}

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
