package sqlite

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	sqlite "modernc.org/sqlite"
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
	// inlineCheckpointPages is the writer connection's own
	// wal_autocheckpoint, a safety net only: should the checkpointer fall
	// behind or fail, the writer checkpoints itself once the WAL holds
	// this many pages (64 MiB at 4 KiB pages), so the WAL stays bounded.
	inlineCheckpointPages = 16000
	// walSizeLimit is the size the WAL file is cut back to whenever the
	// WAL starts over (journal_size_limit, in the writer's DSN):
	// otherwise the file keeps the size of its longest run on disk for
	// good, and under constant ingest overlapping replay reads can keep
	// the WAL from starting over for a while (358 MiB in a soak). It is
	// the writer's own autocheckpoint size, not less: cutting back to 16
	// MiB put the cost of shrinking and regrowing the file on commits
	// (agentd's added p99 at 500 events/s went from 3 to 60 ms).
	walSizeLimit = inlineCheckpointPages * 4096
	// truncatePages: a WAL this long (the writer's own autocheckpoint
	// threshold) has not started over, since readers kept a checkpoint
	// from completing. The checkpointer then tries a TRUNCATE checkpoint,
	// which waits (at most truncateWait, holding off the writer
	// meanwhile) for the readers to leave the WAL, copies the rest and
	// empties the file. At a lower threshold (4,000 pages) it ran often
	// enough to cost ingest under replays (see server/README.md, Memory).
	truncatePages = inlineCheckpointPages
	// truncateWait bounds the wait; a checkpoint that could not truncate
	// is tried again on the next wake.
	truncateWait = 100 * time.Millisecond
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
	c := &checkpointer{db: db, log: log, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
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
		if err := c.checkpoint(context.Background()); err != nil {
			// The next wake tries again, and the writer's own
			// autocheckpoint bounds the WAL meanwhile.
			c.log.Warn("background checkpoint failed", slog.Any("err", err))
		}
	}
}

// checkpoint copies what it can of the WAL into the database file. A
// PASSIVE checkpoint stops at frames a reader still needs; the writer
// restarts the WAL from its start once a checkpoint has copied all of it.
// A WAL of truncatePages or more gets a TRUNCATE checkpoint as well.
func (c *checkpointer) checkpoint(ctx context.Context) error {
	var busy, log, done int
	if err := c.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &done); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	c.runs.Add(1)
	if log < truncatePages {
		return nil
	}
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("truncate checkpoint: %w", err)
	}
	defer conn.Close()
	// busy_timeout is the connection's own: set before each TRUNCATE
	// (PASSIVE never waits).
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, truncateWait.Milliseconds())); err != nil {
		return fmt.Errorf("truncate checkpoint: %w", err)
	}
	if err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &log, &done); err != nil {
		return fmt.Errorf("truncate checkpoint: %w", err)
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
