package crashfs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is one crash-simulating filesystem: its model outlives its mounts.
type FS struct {
	mu      sync.Mutex
	root    *dir
	nextIno uint64
	srv     *fuse.Server
	dir     string
	fsyncs  int // of files and directories, for the tests' logs
	// failSyncs: how many of the next fsyncs of files fail (FailSyncs),
	// of files with one of failNames when it is not empty; failed counts
	// those that did.
	failSyncs, failed int
	failNames         []string
	// failRemoves: names whose unlink fails (FailRemoves).
	failRemoves []string
}

// New returns an empty filesystem, not mounted.
func New() *FS {
	return &FS{root: newDir(fuse.FUSE_ROOT_ID, 0o755), nextIno: fuse.FUSE_ROOT_ID + 1}
}

// ErrUnavailable is what Mount wraps when this machine cannot mount a
// FUSE filesystem (no /dev/fuse, or not root).
var ErrUnavailable = errors.New("cannot mount a FUSE filesystem here")

// Mount mounts the filesystem on dir, which must exist. It needs root and
// /dev/fuse: elsewhere its error wraps ErrUnavailable.
func (c *FS) Mount(dir string) error {
	if c.srv != nil {
		return fmt.Errorf("crashfs: already mounted on %s", c.dir)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: mounting needs root", ErrUnavailable)
	}
	zero := time.Duration(0)
	srv, err := fs.Mount(dir, &dirNode{c: c, d: c.root}, &fs.Options{
		// Nothing is cached in the kernel beyond one request: the model
		// is the only truth, and a remount after Crash must see it.
		// File contents are not cached either (see fileNode.Open).
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			FsName:            "crashfs",
			Name:              "crashfs",
			DirectMountStrict: true, // as root: no fusermount needed
			// Locks (SQLite's fcntl locks, agentd's flock) are kept by
			// the kernel, which drops a dead process's locks.
			EnableLocks: false,
		},
	})
	if err != nil {
		return fmt.Errorf("%w: mount on %s: %v", ErrUnavailable, dir, err)
	}
	c.srv, c.dir = srv, dir
	return nil
}

// Unmount unmounts the filesystem without losing anything (a clean
// shutdown). Processes must no longer hold files on it.
func (c *FS) Unmount() error {
	if c.srv == nil {
		return nil
	}
	srv := c.srv
	c.srv = nil
	if err := srv.Unmount(); err != nil {
		// Something still holds a file on it: detach it, and give
		// whatever holds it a while to let go before saying so.
		if derr := syscall.Unmount(c.dir, syscall.MNT_DETACH); derr != nil {
			return fmt.Errorf("crashfs: unmount %s: %v; detach: %w", c.dir, err, derr)
		}
		done := make(chan struct{})
		go func() { srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("crashfs: unmount %s: %v; detached, but a process still holds a file on it", c.dir, err)
		}
		return nil
	}
	srv.Wait()
	return nil
}

// Crash simulates a power loss: it unmounts the filesystem and keeps
// only what a disk must keep. With rng it also keeps a random part of
// what it may keep (each unsynced page and size with probability keep).
// Kill every process using the filesystem first. Mount again to go on.
func (c *FS) Crash(rng *rand.Rand, keep float64) error {
	if err := c.Unmount(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.root.crash(rng, keep, map[uint64]bool{})
	return nil
}

// FailSyncs makes the next n fsyncs of files (of the files with one of
// names, when names are given) fail with EIO, as a disk's
// write error surfaces, and with Linux's semantics since 4.13: the pages
// the failed fsync should have written are marked clean without being
// written, so reads still return them, a later fsync reports success
// without writing them, and a power loss takes them back. Only what is
// written again after the failure is synced again.
func (c *FS) FailSyncs(n int, names ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failSyncs, c.failNames = n, names
}

// FailRemoves makes every unlink of a file named one of names fail with
// EIO until it is called again (with none to end it): a removal of many
// files that stops partway, as one cut by a kill or a disk's error does.
func (c *FS) FailRemoves(names ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failRemoves = names
}

// FailedSyncs reports how many fsyncs FailSyncs made fail.
func (c *FS) FailedSyncs() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed
}

// Fsyncs reports how many fsyncs of files and directories it has served.
func (c *FS) Fsyncs() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fsyncs
}

func (c *FS) newIno() uint64 {
	c.nextIno++
	return c.nextIno - 1
}

// dirNode and fileNode are the FUSE side of a dir and a file. Every
// operation takes FS.mu: the model is small and the tests are not about
// the filesystem's speed.
type dirNode struct {
	fs.Inode
	c *FS
	d *dir
}

type fileNode struct {
	fs.Inode
	c *FS
	f *file
}

var (
	_ fs.NodeLookuper  = (*dirNode)(nil)
	_ fs.NodeReaddirer = (*dirNode)(nil)
	_ fs.NodeMkdirer   = (*dirNode)(nil)
	_ fs.NodeCreater   = (*dirNode)(nil)
	_ fs.NodeUnlinker  = (*dirNode)(nil)
	_ fs.NodeRmdirer   = (*dirNode)(nil)
	_ fs.NodeRenamer   = (*dirNode)(nil)
	_ fs.NodeGetattrer = (*dirNode)(nil)
	_ fs.NodeSetattrer = (*dirNode)(nil)
	_ fs.NodeFsyncer   = (*dirNode)(nil)
	_ fs.NodeStatfser  = (*dirNode)(nil)

	_ fs.NodeOpener    = (*fileNode)(nil)
	_ fs.NodeReader    = (*fileNode)(nil)
	_ fs.NodeWriter    = (*fileNode)(nil)
	_ fs.NodeFsyncer   = (*fileNode)(nil)
	_ fs.NodeFlusher   = (*fileNode)(nil)
	_ fs.NodeGetattrer = (*fileNode)(nil)
	_ fs.NodeSetattrer = (*fileNode)(nil)
	_ fs.NodeAllocater = (*fileNode)(nil)
)

func (c *FS) child(ctx context.Context, parent *fs.Inode, n node, out *fuse.EntryOut) *fs.Inode {
	switch n := n.(type) {
	case *dir:
		dirAttr(n, &out.Attr)
		return parent.NewInode(ctx, &dirNode{c: c, d: n}, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: n.ino})
	case *file:
		fileAttr(n, &out.Attr)
		return parent.NewInode(ctx, &fileNode{c: c, f: n}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: n.ino})
	}
	panic("crashfs: unknown node")
}

func dirAttr(d *dir, a *fuse.Attr) {
	a.Ino = d.ino
	a.Mode = syscall.S_IFDIR | d.mode
	a.Nlink = 2
	a.Size = 4096
	a.SetTimes(nil, &d.mtime, &d.mtime)
}

func fileAttr(f *file, a *fuse.Attr) {
	a.Ino = f.ino
	a.Mode = syscall.S_IFREG | f.mode
	a.Nlink = 1
	a.Size = uint64(f.size)
	a.Blocks = uint64(len(f.pages)) * pageSize / 512
	a.Blksize = pageSize
	a.SetTimes(nil, &f.mtime, &f.mtime)
}

func (n *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	ch, ok := n.d.entries[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	return n.c.child(ctx, n.EmbeddedInode(), ch, out), 0
}

func (n *dirNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	list := make([]fuse.DirEntry, 0, len(n.d.entries))
	for name, ch := range n.d.entries {
		mode := uint32(syscall.S_IFREG)
		if _, ok := ch.(*dir); ok {
			mode = syscall.S_IFDIR
		}
		list = append(list, fuse.DirEntry{Name: name, Ino: ch.inode(), Mode: mode})
	}
	return fs.NewListDirStream(list), 0
}

func (n *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if _, ok := n.d.entries[name]; ok {
		return nil, syscall.EEXIST
	}
	d := newDir(n.c.newIno(), mode&0o7777)
	n.d.entries[name] = d
	n.d.mtime = time.Now()
	return n.c.child(ctx, n.EmbeddedInode(), d, out), 0
}

func (n *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if ch, ok := n.d.entries[name]; ok {
		// O_CREAT without O_EXCL on a name the kernel did not know yet.
		f, isFile := ch.(*file)
		if flags&syscall.O_EXCL != 0 || !isFile {
			return nil, nil, 0, syscall.EEXIST
		}
		if flags&syscall.O_TRUNC != 0 {
			f.truncate(0)
		}
		return n.c.child(ctx, n.EmbeddedInode(), f, out), nil, openFlags(f), 0
	}
	f := newFile(n.c.newIno(), mode&0o7777)
	f.name = name
	f.mapped = strings.HasSuffix(name, "-shm")
	n.d.entries[name] = f
	n.d.mtime = time.Now()
	return n.c.child(ctx, n.EmbeddedInode(), f, out), nil, openFlags(f), 0
}

func (n *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	ch, ok := n.d.entries[name]
	if !ok {
		return syscall.ENOENT
	}
	if _, isDir := ch.(*dir); isDir {
		return syscall.EISDIR
	}
	if slices.Contains(n.c.failRemoves, name) {
		return syscall.EIO
	}
	delete(n.d.entries, name)
	n.d.mtime = time.Now()
	return 0
}

func (n *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	ch, ok := n.d.entries[name]
	if !ok {
		return syscall.ENOENT
	}
	d, isDir := ch.(*dir)
	if !isDir {
		return syscall.ENOTDIR
	}
	if len(d.entries) > 0 {
		return syscall.ENOTEMPTY
	}
	delete(n.d.entries, name)
	n.d.mtime = time.Now()
	return 0
}

func (n *dirNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if flags != 0 {
		return syscall.EINVAL // RENAME_NOREPLACE, RENAME_EXCHANGE: not needed here
	}
	to, ok := newParent.(*dirNode)
	if !ok {
		return syscall.EXDEV
	}
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	ch, ok := n.d.entries[name]
	if !ok {
		return syscall.ENOENT
	}
	if old, ok := to.d.entries[newName]; ok {
		_, oldDir := old.(*dir)
		_, chDir := ch.(*dir)
		switch {
		case oldDir && !chDir:
			return syscall.EISDIR
		case !oldDir && chDir:
			return syscall.ENOTDIR
		case oldDir && len(old.(*dir).entries) > 0:
			return syscall.ENOTEMPTY
		}
	}
	delete(n.d.entries, name)
	to.d.entries[newName] = ch
	now := time.Now()
	n.d.mtime, to.d.mtime = now, now
	return 0
}

func (n *dirNode) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	dirAttr(n.d, &out.Attr)
	return 0
}

func (n *dirNode) Setattr(ctx context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if m, ok := in.GetMode(); ok {
		n.d.mode = m & 0o7777
	}
	dirAttr(n.d, &out.Attr)
	return 0
}

// Fsync of a directory makes its entries durable.
func (n *dirNode) Fsync(ctx context.Context, _ fs.FileHandle, _ uint32) syscall.Errno {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	n.d.durable = maps.Clone(n.d.entries)
	n.c.fsyncs++
	return 0
}

// Statfs reports a large, mostly free disk: free-space checks (agentd's,
// SQLite's) find room.
func (n *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize = pageSize
	out.Frsize = pageSize
	out.Blocks = 1 << 20 // 4 GiB
	out.Bfree = 1 << 19
	out.Bavail = 1 << 19
	out.Files = 1 << 20
	out.Ffree = 1 << 19
	out.NameLen = 255
	return 0
}

// openFlags has the kernel send every read and write of the file here
// (direct I/O) instead of keeping its pages: with the page cache, a read
// racing an append on another descriptor could cache a page with the
// appended bytes missing and serve it after the append (reproduced by
// TestAppendWhileReading). The exception is SQLite's shared-memory index
// (-shm), which is only ever mmapped, needs the page cache for that, and
// needs no durability: SQLite rebuilds it from the WAL.
func openFlags(f *file) uint32 {
	if f.mapped {
		return 0
	}
	return fuse.FOPEN_DIRECT_IO
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if flags&syscall.O_TRUNC != 0 {
		n.f.truncate(0)
	}
	return nil, openFlags(n.f), 0
}

func (n *fileNode) Read(ctx context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	k := n.f.read(dest, off)
	return fuse.ReadResultData(dest[:k]), 0
}

func (n *fileNode) Write(ctx context.Context, _ fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	n.f.write(data, off)
	return uint32(len(data)), 0
}

// Fsync (and fdatasync) of a file makes its content durable.
func (n *fileNode) Fsync(ctx context.Context, _ fs.FileHandle, _ uint32) syscall.Errno {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if n.c.failSyncs > 0 && (len(n.c.failNames) == 0 || slices.Contains(n.c.failNames, n.f.name)) {
		n.c.failSyncs--
		n.c.failed++
		n.f.failSync()
		return syscall.EIO
	}
	n.f.sync()
	n.c.fsyncs++
	return 0
}

// Flush is close(2): it syncs nothing, as on a disk.
func (n *fileNode) Flush(ctx context.Context, _ fs.FileHandle) syscall.Errno { return 0 }

func (n *fileNode) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	fileAttr(n.f, &out.Attr)
	return 0
}

func (n *fileNode) Setattr(ctx context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if size, ok := in.GetSize(); ok {
		n.f.truncate(int64(size))
	}
	if m, ok := in.GetMode(); ok {
		n.f.mode = m & 0o7777
	}
	fileAttr(n.f, &out.Attr)
	return 0
}

// Allocate (fallocate mode 0) grows the file with zeros; the other modes
// are not needed here.
func (n *fileNode) Allocate(ctx context.Context, _ fs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	if mode != 0 {
		return syscall.EOPNOTSUPP
	}
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if end := int64(off + size); end > n.f.size {
		n.f.truncate(end)
	}
	return 0
}
