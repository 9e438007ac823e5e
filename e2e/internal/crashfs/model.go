// Package crashfs is a filesystem that loses, on a simulated power loss,
// exactly what a disk may lose: everything not made durable by fsync.
//
// It is mounted with FUSE, so the processes under test (rein-server's
// SQLite, agentd's outbox) run unchanged on it, with their own syscalls.
// Its files live in memory. Each file keeps two versions of its pages and
// size: the current one, which reads see, and the durable one, which
// fsync (or fdatasync) of that file sets to the current one. Each
// directory keeps two versions of its entries in the same way, set by
// fsync of the directory. That is POSIX's rule, stricter than ext4's
// journal (whose fsync of any file also commits every earlier create and
// rename): a program that keeps its promises here keeps them there.
//
// Crash unmounts the filesystem (the processes on it must be dead: a
// power loss kills them too) and keeps the durable versions. Given a
// random source, it keeps, as a disk may, a random part of what was
// written and never synced: each page written since the file's last
// fsync is kept or not, and each file's size is the synced or the
// current one. Pages are 4 KiB, a disk's unit of atomic write. Mount
// again to read what survived.
package crashfs

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

const pageSize = 4096

// node is a file or a directory of the model.
type node interface{ inode() uint64 }

type file struct {
	ino   uint64
	mode  uint32
	mtime time.Time
	name  string // at creation, for FailSyncs
	// mapped: SQLite's -shm, read and written through mmap only, so
	// served through the kernel's page cache (openFlags).
	mapped bool
	// The current content.
	size  int64
	pages map[int64][]byte // page index -> pageSize bytes; a missing page reads as zeros
	dirty map[int64]bool   // pages changed (or removed) since the last fsync
	// The durable content: what a power loss keeps for certain.
	dsize  int64
	dpages map[int64][]byte
}

type dir struct {
	ino     uint64
	mode    uint32
	mtime   time.Time
	entries map[string]node
	durable map[string]node
}

func (f *file) inode() uint64 { return f.ino }
func (d *dir) inode() uint64  { return d.ino }

func newFile(ino uint64, mode uint32) *file {
	return &file{ino: ino, mode: mode, mtime: time.Now(), pages: map[int64][]byte{}, dirty: map[int64]bool{}, dpages: map[int64][]byte{}}
}

func newDir(ino uint64, mode uint32) *dir {
	return &dir{ino: ino, mode: mode, mtime: time.Now(), entries: map[string]node{}, durable: map[string]node{}}
}

// read copies the content at off into dest and returns how much it read.
func (f *file) read(dest []byte, off int64) int {
	if off >= f.size {
		return 0
	}
	n := int(min(int64(len(dest)), f.size-off))
	for i := 0; i < n; {
		p, o := (off+int64(i))/pageSize, int((off+int64(i))%pageSize)
		k := min(pageSize-o, n-i)
		if pg, ok := f.pages[p]; ok {
			copy(dest[i:i+k], pg[o:o+k])
		} else {
			clear(dest[i : i+k])
		}
		i += k
	}
	return n
}

// write writes data at off, growing the file as needed.
func (f *file) write(data []byte, off int64) {
	for i := 0; i < len(data); {
		p, o := (off+int64(i))/pageSize, int((off+int64(i))%pageSize)
		k := min(pageSize-o, len(data)-i)
		pg, ok := f.pages[p]
		if !ok {
			pg = make([]byte, pageSize)
			f.pages[p] = pg
		}
		copy(pg[o:o+k], data[i:i+k])
		f.dirty[p] = true
		i += k
	}
	f.size = max(f.size, off+int64(len(data)))
	f.mtime = time.Now()
}

// truncate sets the size: the pages past it go, and the bytes past it in
// its last page are zeroed, so that growing the file again reads zeros.
func (f *file) truncate(size int64) {
	if size < f.size {
		last := (size + pageSize - 1) / pageSize // first page wholly past size
		for p := range f.pages {
			if p >= last {
				delete(f.pages, p)
				f.dirty[p] = true
			}
		}
		if o := size % pageSize; o != 0 {
			if pg, ok := f.pages[size/pageSize]; ok {
				clear(pg[o:])
				f.dirty[size/pageSize] = true
			}
		}
	}
	f.size = size
	f.mtime = time.Now()
}

// sync makes the current content durable.
func (f *file) sync() {
	for p := range f.dirty {
		if pg, ok := f.pages[p]; ok {
			f.dpages[p] = append([]byte(nil), pg...)
		} else {
			delete(f.dpages, p)
		}
	}
	clear(f.dirty)
	f.dsize = f.size
}

// failSync is a failed fsync: the pages it should have written are
// forgotten as dirty (clean, unwritten), and the size stays unsynced.
func (f *file) failSync() {
	clear(f.dirty)
}

// crash replaces the current content with what a power loss leaves: the
// durable content, and, with rng, each unsynced page with probability
// keep, and the unsynced size with probability keep.
func (f *file) crash(rng *rand.Rand, keep float64) {
	pages := maps.Clone(f.dpages)
	size := f.dsize
	if rng != nil {
		if size != f.size && rng.Float64() < keep {
			size = f.size
		}
		// In page order, so that a seed gives the same result each run.
		for _, p := range slices.Sorted(maps.Keys(f.dirty)) {
			if rng.Float64() >= keep {
				continue
			}
			if pg, ok := f.pages[p]; ok {
				pages[p] = pg
			} else {
				delete(pages, p)
			}
		}
	}
	// That is what the disk holds now: cut to its size as truncate cuts
	// (from past every page), and all of it durable, as sync makes it.
	f.pages, f.dpages, f.dirty = map[int64][]byte{}, map[int64][]byte{}, map[int64]bool{}
	for p, pg := range pages {
		f.pages[p] = append([]byte(nil), pg...)
		f.dirty[p] = true
	}
	f.size = math.MaxInt64
	f.truncate(size)
	f.sync()
}

// crash replaces every directory reachable through durable entries with
// its durable entries, and every file reachable so with its crash
// content. What is not reachable so is gone.
func (d *dir) crash(rng *rand.Rand, keep float64, seen map[uint64]bool) {
	if seen[d.ino] {
		return
	}
	seen[d.ino] = true
	d.entries = maps.Clone(d.durable)
	// In name order, so that a seed gives the same result each run.
	for _, name := range slices.Sorted(maps.Keys(d.entries)) {
		switch n := d.entries[name].(type) {
		case *dir:
			n.crash(rng, keep, seen)
		case *file:
			if !seen[n.ino] {
				seen[n.ino] = true
				n.crash(rng, keep)
			}
		}
	}
}
