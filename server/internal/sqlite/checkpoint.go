package sqlite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Checkpoints. With SQLite's automatic checkpoint, the commit that takes
// the WAL past wal_autocheckpoint pages copies the WAL back into the
// database file (and, with synchronous=FULL, syncs it) before it returns,
// on the writer connection: every request of that group, and every request
// queued behind it, waits for the copy. Single-event ingest crossed the
// threshold tens of times a second. Here the writer only counts the pages
// it commits and wakes a goroutine of the Store, which checkpoints on a
// connection of its own while the writer goes on committing: a PASSIVE
// checkpoint takes no lock that a writer needs.
const (
	// checkpointPages is how many pages the writer commits to the WAL
	// before it wakes the checkpointer: SQLite's default threshold, so
	// the WAL stays as small as it was.
	checkpointPages = 1000
	// walLimitPages (64 MiB at 4 KiB pages) is the WAL's size limit and
	// the length at which the checkpointer restarts it. It used to be
	// the writer connection's own wal_autocheckpoint, a safety net should
	// the checkpointer fall behind; that is off now (see "A failed
	// fsync"): the checkpointer is the only one, and a PASSIVE checkpoint
	// on the writer would have copied no more than it does.
	walLimitPages = 16000
	// walSizeLimit is the size the WAL file is cut back to whenever the
	// WAL starts over (journal_size_limit, in the writer's DSN):
	// otherwise the file keeps the size of its longest run on disk for
	// good, and under constant ingest overlapping replay reads can keep
	// the WAL from starting over for a while (358 MiB in a soak). It is
	// walLimitPages, not less: cutting back to 16 MiB put the cost of
	// shrinking and regrowing the file on commits (agentd's added p99 at
	// 500 events/s went from 3 to 60 ms).
	walSizeLimit = walLimitPages * 4096
	// restartPages: a WAL this long (walLimitPages) has not started
	// over, since readers kept a checkpoint from completing. The
	// checkpointer then tries a RESTART checkpoint, which waits (at most
	// restartWait, holding off the writer meanwhile) for the readers to
	// leave the WAL, copies the rest, and has the next commit start the
	// WAL over from its beginning; journal_size_limit keeps the file at
	// walSizeLimit, filled out (wal.go). (A TRUNCATE checkpoint emptied
	// the file instead, and commits then paid for growing it again; it
	// ran rarely while the writer's own autocheckpoint ran first at this
	// size, which is off now.) At a lower threshold (4,000 pages) it ran
	// often enough to cost ingest under replays (server/README.md,
	// Memory).
	restartPages = walLimitPages
	// restartWait bounds the wait; a checkpoint that could not restart
	// the WAL is tried again on the next wake.
	restartWait = 100 * time.Millisecond
)

// checkpointer runs PASSIVE checkpoints when the writer has committed
// checkpointPages pages since the last one. The Store starts it in Open
// and stops it in Close, before the other connections close.
type checkpointer struct {
	db   *sqlx.DB
	log  *slog.Logger
	wake chan struct{}
	quit chan struct{}
	done chan struct{}
	// pages is what the writer committed since it last woke the
	// checkpointer. Only Commit (the writer's single connection, so
	// never concurrently) touches it.
	pages int
	// runs counts the checkpoints completed (tests wait on it).
	runs     atomic.Int64
	stopOnce sync.Once
	// failed receives the error of a checkpoint whose fsync failed, once
	// (lost); lost is closed then, and the checkpointer runs no more.
	failed chan error
	lost   chan struct{}
	// copyWAL is checkpoint; a test has it fail as a disk does.
	copyWAL func(context.Context) error
}

// startCheckpointer opens the checkpointer's connection on dsn and starts
// its goroutine.
func startCheckpointer(dsn string, log *slog.Logger) (*checkpointer, error) {
	db, err := sqlx.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open checkpointer connection: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	c := &checkpointer{db: db, log: log, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}), failed: make(chan error, 1), lost: make(chan struct{})}
	c.copyWAL = c.checkpoint
	go c.run()
	return c, nil
}

func (c *checkpointer) run() {
	defer close(c.done)
	for {
		select {
		case <-c.quit:
			return
		case <-c.wake:
		}
		err := c.copyWAL(context.Background())
		switch {
		case err == nil:
		case failedSync(err):
			// See "A failed fsync" below: no checkpoint may run again
			// in this process.
			c.failed <- err
			close(c.lost)
			return
		default:
			// The next wake tries again; the WAL grows meanwhile.
			c.log.Warn("background checkpoint failed", slog.Any("err", err))
		}
	}
}

// A failed fsync. A checkpoint copies WAL frames into the database file,
// and SQLite syncs that file only when it has copied the whole WAL: the
// partial checkpoints before (a reader still needs the last frames) leave
// their pages to that sync, and count them as copied. When that sync
// fails, Linux (since 4.13) marks the pages it did not write clean: the
// next sync succeeds without them, and SQLite, which copies only frames
// past those it counts as copied, would restart the WAL over frames the
// database file never received. A power loss then leaves a database that
// misses acknowledged writes or does not open ("database disk image is
// malformed"), as e2e's TestServerFailedSyncs showed. So after a failed
// fsync of a checkpoint the store stops checkpointing, does not close its
// connections (the last close checkpoints too), and reports the failure
// (Store.Lost) for the process to exit. The next start finds the WAL
// whole and copies all of it again. That is also why the writer's own
// autocheckpoint is off (wal_autocheckpoint(0)): SQLite ignores its
// errors, so a failed sync in it would go unseen.

// failedSync reports whether err is SQLite's for a failed fsync.
func failedSync(err error) bool {
	// SQLite's *sqlite.Error has the code; asked by its method, so a
	// test can fail a checkpoint as a disk does.
	var se interface{ Code() int }
	if !errors.As(err, &se) {
		return false
	}
	return se.Code() == sqlite3.SQLITE_IOERR_FSYNC || se.Code() == sqlite3.SQLITE_IOERR_DIR_FSYNC
}

// checkpoint copies what it can of the WAL into the database file. A
// PASSIVE checkpoint stops at frames a reader still needs; the writer
// restarts the WAL from its start once a checkpoint has copied all of it.
// A WAL of restartPages or more gets a RESTART checkpoint as well.
func (c *checkpointer) checkpoint(ctx context.Context) error {
	var busy, log, done int
	if err := c.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &done); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	c.runs.Add(1)
	if log < restartPages {
		return nil
	}
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("restart checkpoint: %w", err)
	}
	defer conn.Close()
	// busy_timeout is the connection's own: set before each RESTART
	// (PASSIVE never waits).
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, restartWait.Milliseconds())); err != nil {
		return fmt.Errorf("restart checkpoint: %w", err)
	}
	if err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(RESTART)`).Scan(&busy, &log, &done); err != nil {
		return fmt.Errorf("restart checkpoint: %w", err)
	}
	return nil
}

// committed counts the pages the writer's last commit wrote to the WAL
// and wakes the checkpointer when they add up to checkpointPages. w is
// the writer pool; its one connection is idle (the commit has ended).
func (c *checkpointer) committed(ctx context.Context, w *sqlx.DB) error {
	conn, err := w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("count committed pages: %w", err)
	}
	defer conn.Close()
	var n int
	err = conn.Raw(func(dc any) error {
		st, ok := dc.(sqlite.DBStatus)
		if !ok {
			return fmt.Errorf("driver connection %T has no status counters", dc)
		}
		// CACHE_WRITE counts the pages written out, to the WAL here;
		// reset so each commit reads its own.
		n, _, err = st.Status(sqlite.DBStatusCacheWrite, true)
		return err
	})
	if err != nil {
		return fmt.Errorf("count committed pages: %w", err)
	}
	c.pages += n
	if c.pages < checkpointPages {
		return nil
	}
	c.pages = 0
	select {
	case c.wake <- struct{}{}:
	default: // a checkpoint is already due; it will see these pages too
	}
	return nil
}

// stop ends the goroutine, waits for it and closes the connection. A
// second stop (a Store closed twice) does nothing.
func (c *checkpointer) stop() error {
	var err error
	c.stopOnce.Do(func() {
		close(c.quit)
		<-c.done
		if cerr := c.db.Close(); cerr != nil {
			err = fmt.Errorf("close checkpointer connection: %w", cerr)
		}
	})
	return err
}
