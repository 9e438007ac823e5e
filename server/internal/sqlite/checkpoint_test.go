package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/disktest"
	"github.com/rein-ai/rein/server/store"
)

// walFrames returns the frames the WAL holds now (checkpointing what it
// can on the way, which changes no frame count).
func walFrames(t *testing.T, s *Store) int {
	t.Helper()
	var busy, log, done int
	if err := s.r.QueryRowContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &done); err != nil {
		t.Fatal(err)
	}
	return log
}

// The writer does not checkpoint: once it has committed checkpointPages
// pages, the Store's checkpointer copies the WAL back on its own
// connection, and the writer's next commit starts the WAL over. No
// connection checkpoints by itself (wal_autocheckpoint 0).
func TestBackgroundCheckpoint(t *testing.T) {
	for _, sync := range []string{SyncFull, SyncNormal} {
		t.Run(sync, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rein.db")
			s, err := Open(context.Background(), path, Options{Sync: sync})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			var autockpt int
			if err := s.w.GetContext(context.Background(), &autockpt, `PRAGMA wal_autocheckpoint`); err != nil {
				t.Fatal(err)
			}
			if autockpt != 0 {
				t.Fatalf("writer wal_autocheckpoint = %d; want 0", autockpt)
			}
			commit(t, s, store.CreateSession{Session: newSession("a")})
			// Bodies of a page each: well past checkpointPages in a
			// few commits.
			body := `"` + strings.Repeat("x", 4000) + `"`
			pos := int64(1)
			for woke := false; !woke; {
				before := s.ckpt.pages
				evs := make([]store.Event, 100)
				for i := range evs {
					evs[i] = store.Event{Pos: pos, Instance: "i", AgentSeq: pos, Body: []byte(body)}
					pos++
				}
				commit(t, s, store.AppendEvents{SessionID: "a", Events: evs})
				if s.ckpt.pages < before+len(evs) {
					woke = true // the count started over
				}
				if pos > 10*checkpointPages {
					t.Fatalf("%d events of a page each did not wake the checkpointer", pos-1)
				}
			}
			if s.ckpt.runs.Load() > 1 {
				t.Fatalf("%d checkpoints for one wake", s.ckpt.runs.Load())
			}
			// Wait for the checkpoint the commits asked for.
			for start := time.Now(); s.ckpt.runs.Load() == 0; time.Sleep(time.Millisecond) {
				if time.Since(start) > time.Minute {
					t.Fatal("no checkpoint a minute after the writer asked for one")
				}
			}
			commit(t, s, store.CreateSession{Session: newSession("b")})
			if n := walFrames(t, s); n >= checkpointPages {
				t.Errorf("WAL holds %d frames after a checkpoint and a small commit; want it started over", n)
			}
			evs, err := s.Events(context.Background(), "a")
			if err != nil || int64(len(evs)) != pos-1 {
				t.Fatalf("Events: %d, %v; want %d", len(evs), err, pos-1)
			}
		})
	}
}

// endsAfter is a context whose Err reports a passed deadline from its
// n+1st call on: a deadline that passes in the middle of a commit.
type endsAfter struct {
	context.Context
	n int
}

func (c *endsAfter) Err() error {
	if c.n--; c.n < 0 {
		return context.DeadlineExceeded
	}
	return nil
}

// The statements of a commit run without the context's cancellation (see
// Commit), but a deadline that passes between two of them still fails the
// commit, and none of its ops is stored.
func TestCommitDeadlineBetweenStatements(t *testing.T) {
	s := openFile(t, filepath.Join(t.TempDir(), "rein.db"))
	ctx := &endsAfter{Context: context.Background(), n: 1}
	err := s.Commit(ctx, []store.Op{
		store.CreateSession{Session: newSession("a")},
		store.SetSandboxToken{SessionID: "a", At: 1},
		store.AddInstance{SessionID: "a", Instance: "i", At: 1},
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Commit past its deadline: %v; want DeadlineExceeded", err)
	}
	if _, err := s.Session(context.Background(), "a"); protocol.CodeOf(err) != protocol.CodeNotFound {
		t.Fatalf("session of the failed commit: %v; want not found", err)
	}
}

// A reader that keeps the WAL from starting over (replays' read
// transactions overlapping under constant ingest) no longer leaves the
// file long on disk once readers have moved on: when the WAL starts over,
// journal_size_limit cuts it back.
func TestWALShrinksOnceReadersLeave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rein.db")
	const limit = 16 << 20 // smaller than walSizeLimit: quicker to pass
	s, err := Open(context.Background(), path, Options{walLimit: limit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	commit(t, s, store.CreateSession{Session: newSession("a")})
	tx, err := s.r.BeginTxx(context.Background(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.Get(&n, `SELECT count(*) FROM sessions`); err != nil {
		t.Fatal(err)
	}
	body := `"` + strings.Repeat("x", 4000) + `"`
	pos := int64(1)
	write := func(events int) {
		for events > 0 {
			evs := make([]store.Event, min(100, events))
			for i := range evs {
				evs[i] = store.Event{Pos: pos, Instance: "i", AgentSeq: pos, Body: []byte(body)}
				pos++
			}
			commit(t, s, store.AppendEvents{SessionID: "a", Events: evs})
			events -= len(evs)
		}
	}
	walSize := func() int64 {
		t.Helper()
		fi, err := os.Stat(walPath(path))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	// The open read transaction holds the WAL: it grows to about 28 MiB
	// (events of a page each), past journal_size_limit.
	write(7 * checkpointPages)
	if held := walSize(); held < limit*3/2 {
		t.Fatalf("WAL file of %d bytes under an open read transaction; want it well past %d", held, limit)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	// Commits go on, with checkpoints between them, until the WAL has
	// started over or been truncated.
	for i := 0; walSize() > limit; i++ {
		if i == 1000 {
			t.Fatalf("WAL file still %d bytes after %d more commits without readers", walSize(), i)
		}
		walFrames(t, s)
		write(1)
	}
	evs, err := s.Events(context.Background(), "a")
	if err != nil || int64(len(evs)) != pos-1 {
		t.Fatalf("Events: %d, %v; want %d", len(evs), err, pos-1)
	}
}

// fsyncError is SQLite's error for a failed fsync (SQLITE_IOERR_FSYNC),
// as a checkpoint gets it from a disk that could not write its pages.
type fsyncError struct{}

func (fsyncError) Error() string { return "disk I/O error (1034)" }
func (fsyncError) Code() int     { return sqlite3.SQLITE_IOERR_FSYNC }

// A checkpoint whose fsync fails while Close is stopping the checkpointer
// (a shutdown's last commits woke it) is a failed fsync all the same:
// Close must leave the connections open, since the last one to close
// would checkpoint the WAL over pages the disk dropped and cut the WAL
// to nothing (checkpoint.go, "A failed fsync"). Close looked for the
// failure before it stopped the checkpointer, missed this one, and
// closed.
func TestFailedFsyncWhileClosing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rein.db")
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s, store.CreateSession{Session: newSession("a")})
	c := s.ckpt
	running := make(chan struct{})
	// Set before the wake below, which the checkpointer receives before
	// it reads copyWAL.
	c.copyWAL = func(context.Context) error {
		close(running)
		<-c.quit // Close is stopping the checkpointer
		return fmt.Errorf("checkpoint: %w", fsyncError{})
	}
	c.wake <- struct{}{}
	<-running
	err = s.Close()
	if err == nil || !strings.Contains(err.Error(), "failed fsync") {
		t.Errorf("Close after a checkpoint's failed fsync: %v; want it refused", err)
	}
	select {
	case <-s.Lost():
	default:
		t.Error("Lost() reported nothing")
	}
	// The WAL still holds the commit: a closed last connection would
	// have checkpointed it and cut the file to nothing.
	if fi, err := os.Stat(walPath(path)); err != nil || fi.Size() == 0 {
		t.Fatalf("the WAL after Close: %v, %v; want it kept whole for the next start", fi, err)
	}
	// What the next start finds: the WAL whole, the session in it.
	dir := t.TempDir()
	for _, suffix := range []string{"", "-wal"} {
		disktest.CopyFile(t, path+suffix, filepath.Join(dir, "rein.db"+suffix))
	}
	next := openFile(t, filepath.Join(dir, "rein.db"))
	if _, err := next.Session(context.Background(), "a"); err != nil {
		t.Fatalf("the next start: %v; want session a", err)
	}
}
