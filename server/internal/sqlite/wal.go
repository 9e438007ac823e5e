package sqlite

import (
	"errors"
	"fmt"
	"os"
)

// The WAL file is filled out to its full cycle once, at Open. With
// synchronous=FULL each commit ends in a sync of the WAL (an fsync: the
// modernc build of SQLite never calls fdatasync), and one after a write
// past the end of the file also commits ext4's journal for the new size:
// about twice the sync (server/README.md, Durability). Under
// constant ingest the WAL starts over only at the writer's autocheckpoint,
// 64 MiB on, so every commit until then grew the file. Zeros after the
// last frame are what a WAL that has started over holds anyway (or stale
// frames): recovery stops at the first frame that fails its checksum, and
// a WAL whose header is zero is empty.

// walPath is the WAL's file beside the database at path.
func walPath(path string) string { return path + "-wal" }

// preallocateWAL writes zeros from the end of the WAL file at path up to
// size bytes and syncs them. It must run while no connection is writing:
// in Open, after the migrations and before the Store is returned, when
// the writer is idle and the checkpointer has not been woken (a
// checkpoint could restart the WAL meanwhile). It never touches the bytes already
// in the file. A missing WAL (SQLite creates it with the first connection
// in WAL mode) or one already this long is left as it is. If the zeros
// cannot all be written (a full disk), the file is cut back to its old
// length so that nothing is held that the database did not ask for, and
// the error says so: the caller carries on, the WAL then grows as SQLite
// writes it.
func preallocateWAL(path string, size int64) (err error) {
	f, err := os.OpenFile(walPath(path), os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("preallocate WAL: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("preallocate WAL: %w", cerr)
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("preallocate WAL: %w", err)
	}
	from := fi.Size()
	if from >= size {
		return nil
	}
	zeros := make([]byte, 1<<20)
	for off := from; off < size; {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return cutBack(f, from, fmt.Errorf("preallocate WAL to %d bytes: %w", size, err))
		}
		off += n
	}
	if err := f.Sync(); err != nil {
		return cutBack(f, from, fmt.Errorf("preallocate WAL to %d bytes: sync: %w", size, err))
	}
	return nil
}

// cutBack truncates f to its length before preallocateWAL and returns
// err, joined with the truncate's own error if that fails too.
func cutBack(f *os.File, size int64, err error) error {
	if terr := f.Truncate(size); terr != nil {
		return errors.Join(err, fmt.Errorf("cut the WAL back to %d bytes: %w", size, terr))
	}
	return err
}
