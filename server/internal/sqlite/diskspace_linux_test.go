package sqlite

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

// A directory on a read-only mount (here a read-only bind mount of a
// temporary directory, as a disk that ext4 turned read-only after an
// error shows it: free space left, writes refused) is said to be
// read-only, beside its free space; a writable one gets its free space
// alone.
func TestDiskNote(t *testing.T) {
	dir := t.TempDir()
	if note := diskNote(dir); !strings.HasPrefix(note, "the disk holding "+dir+" has ") || !strings.HasSuffix(note, " free") {
		t.Errorf("diskNote of a writable directory = %q", note)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("diskNote left %d files behind", len(entries))
	}
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		msg := "cannot bind-mount (needs root on Linux): " + err.Error()
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("SKIP " + msg)
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	note := diskNote(dir)
	if !strings.HasPrefix(note, "the disk holding "+dir+" is read-only, with ") || !strings.HasSuffix(note, " free") {
		t.Errorf("diskNote of a read-only directory = %q", note)
	}
}
