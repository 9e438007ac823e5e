package crashfs

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// mounted is MountTemp.
func mounted(t *testing.T) (*FS, string) { t.Helper(); return MountTemp(t) }

func write(t *testing.T, path string, data []byte, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}

func crash(t *testing.T, c *FS, dir string, rng *rand.Rand, keep float64) {
	t.Helper()
	if err := c.Crash(rng, keep); err != nil {
		t.Fatal(err)
	}
	if err := c.Mount(dir); err != nil {
		t.Fatal(err)
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

// TestCrashKeepsWhatWasSynced: a power loss keeps a file's synced
// content and the directory entries synced with their directory, and
// loses the rest, by POSIX's rules.
func TestCrashKeepsWhatWasSynced(t *testing.T) {
	c, dir := mounted(t)
	write(t, filepath.Join(dir, "synced"), []byte("kept"), true)
	write(t, filepath.Join(dir, "unsynced"), []byte("lost"), false)
	write(t, filepath.Join(dir, "rewritten"), []byte("old"), true)
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	syncDir(t, dir)
	// Entries made after the directory's fsync, and a rename, are not
	// durable until the next one; a file's data is not durable until
	// its fsync, entry or not.
	write(t, filepath.Join(dir, "rewritten"), []byte("new"), false)
	write(t, filepath.Join(dir, "late"), []byte("late"), true)
	write(t, filepath.Join(sub, "inner"), []byte("inner"), true)
	if err := os.Rename(filepath.Join(dir, "synced"), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"late", "moved", "rewritten", "sub", "unsynced"}) {
		t.Fatalf("before the crash: %v", got)
	}
	if c.Fsyncs() == 0 {
		t.Fatal("no fsync reached the filesystem")
	}
	crash(t, c, dir, nil, 0)
	if got := names(t, dir); !slices.Equal(got, []string{"rewritten", "sub", "synced", "unsynced"}) {
		t.Fatalf("after the crash: %v", got)
	}
	for name, want := range map[string]string{"synced": "kept", "unsynced": "", "rewritten": "old"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("%s after the crash: %q, %v; want %q", name, b, err, want)
		}
	}
	if got := names(t, sub); len(got) != 0 {
		t.Errorf("sub after the crash: %v; its entry was never synced", got)
	}

	// Synced again, everything survives the next crash.
	write(t, filepath.Join(dir, "rewritten"), []byte("newer"), true)
	write(t, filepath.Join(sub, "inner"), []byte("inner"), true)
	syncDir(t, sub)
	syncDir(t, dir)
	crash(t, c, dir, nil, 0)
	if b, err := os.ReadFile(filepath.Join(dir, "rewritten")); err != nil || string(b) != "newer" {
		t.Errorf("rewritten: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(sub, "inner")); err != nil || string(b) != "inner" {
		t.Errorf("sub/inner: %q, %v", b, err)
	}
}

// TestCrashTearsUnsyncedPages: with a random source, each page written
// since the last fsync may or may not survive, in 4 KiB pages, and
// nothing synced is lost.
func TestCrashTearsUnsyncedPages(t *testing.T) {
	c, dir := mounted(t)
	path := filepath.Join(dir, "log")
	old := bytes.Repeat([]byte("o"), 64*pageSize)
	write(t, path, old, true)
	syncDir(t, dir)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("n"), 64*pageSize), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	crash(t, c, dir, rand.New(rand.NewPCG(1, 2)), 0.5)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != len(old) {
		t.Fatalf("size %d, want %d", len(b), len(old))
	}
	kept := 0
	for p := 0; p < 64; p++ {
		pg := b[p*pageSize : (p+1)*pageSize]
		switch {
		case bytes.Count(pg, []byte("n")) == pageSize:
			kept++
		case bytes.Count(pg, []byte("o")) != pageSize:
			t.Fatalf("page %d is neither old nor new: a page is written whole", p)
		}
	}
	if kept == 0 || kept == 64 {
		t.Fatalf("%d of 64 unsynced pages kept with keep=0.5", kept)
	}
}

// TestTruncateReadsZeros: a file cut and grown again reads zeros past
// the cut, before and after a crash that keeps it.
func TestTruncateReadsZeros(t *testing.T) {
	c, dir := mounted(t)
	path := filepath.Join(dir, "f")
	write(t, path, bytes.Repeat([]byte("x"), 3*pageSize), true)
	if err := os.Truncate(path, 100); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 2*pageSize); err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Repeat([]byte("x"), 100), make([]byte, 2*pageSize-100)...)
	if b, _ := os.ReadFile(path); !bytes.Equal(b, want) {
		t.Fatalf("after truncating: %d bytes, %d x", len(b), bytes.Count(b, []byte("x")))
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	syncDir(t, dir)
	crash(t, c, dir, nil, 0)
	if b, _ := os.ReadFile(path); !bytes.Equal(b, want) {
		t.Fatalf("after the crash: %d bytes, %d x", len(b), bytes.Count(b, []byte("x")))
	}
}

// TestFailedSyncLosesItsPages: an fsync that fails reports EIO once; the
// next one succeeds without writing what the failed one should have, so a
// power loss takes it back, unless it was written again.
func TestFailedSyncLosesItsPages(t *testing.T) {
	c, dir := mounted(t)
	path := filepath.Join(dir, "f")
	write(t, path, bytes.Repeat([]byte("o"), 2*pageSize), true)
	syncDir(t, dir)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte("n"), 2*pageSize), 0); err != nil {
		t.Fatal(err)
	}
	c.FailSyncs(1)
	if err := f.Sync(); err == nil {
		t.Fatal("the failing fsync succeeded")
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("the fsync after the failure: %v", err)
	}
	// Written again after the failure: synced by the next fsync.
	if _, err := f.WriteAt([]byte("w"), pageSize); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); bytes.Count(b, []byte("n")) != 2*pageSize-1 {
		t.Fatalf("before the crash, reads see %d new bytes, want all written", bytes.Count(b, []byte("n")))
	}
	f.Close()
	crash(t, c, dir, nil, 0)
	b, _ := os.ReadFile(path)
	want := append(bytes.Repeat([]byte("o"), pageSize), 'w')
	want = append(want, bytes.Repeat([]byte("n"), pageSize-1)...)
	if !bytes.Equal(b, want) || c.FailedSyncs() != 1 {
		t.Fatalf("after the crash: %q... (%d bytes), %d failed syncs; want the first page old, the second new", b[:8], len(b), c.FailedSyncs())
	}
}
