package outbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// A full disk is a wait, not a failure. The state dir often shares its
// disk with the agent's work (one container volume), and an agent that
// fills it, or anything else that does, must not cost the events it
// writes: returning the error made the adapter stop, the supervisor
// restart the agent and the uploader's next heartbeat end agentd, with
// the turn's remaining output lost. Instead Append frees what the server
// has acknowledged and otherwise waits, as it does at MaxBytes, so the
// agent blocks on its output until there is room.
//
// A disk that refuses writes altogether (read-only: ext4 remounts itself
// so after an error, by default; or failing with EIO) is waited for the
// same way. It is most likely the agent's disk too, so the agent could
// not work on it either; the session is told, the events already logged
// are still read and posted, and nothing is dropped. An operator then
// repairs the volume or restarts the sandbox on a good one.

// spaceRetry is how often a refused write is tried again while nothing
// frees space in the log itself (space freed by others, or a disk that
// accepts writes again, is not announced).
const spaceRetry = 500 * time.Millisecond

// noSpace reports a write refused for want of space: a full disk or an
// exhausted quota.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// refused reports a write the disk refuses for now: for want of space, or
// because it is read-only or failing.
func refused(err error) bool {
	return noSpace(err) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EIO)
}

// noRoom handles a write the disk refused (cause, see refused); l.mu is
// held and is released. It frees what it can and, with wait, waits for
// the write to go through: again means try it again. *waiting records
// that the caller is counted in spaceWaiters (the caller uncounts it when
// it returns).
func (l *Log) noRoom(ctx context.Context, cause error, wait bool, waiting *bool) (again bool, err error) {
	if l.spaceSince.IsZero() {
		l.spaceSince = time.Now()
	}
	l.blockCause = cause
	if l.giveUp {
		l.mu.Unlock()
		if !wait {
			return false, nil // as any refusal: TryAppend does not wait
		}
		return false, fmt.Errorf("outbox: the state dir's disk refused a write and agentd is stopping: %w", cause)
	}
	if l.reclaim() {
		l.mu.Unlock()
		return true, nil
	}
	// Whatever the server has not acknowledged is freed by its Ack, which
	// on a small disk is a pause of milliseconds, logged at debug level;
	// with nothing left to acknowledge, only others can free space.
	switch {
	case l.a < l.w:
		l.log.Debug("outbox: no space left on the state dir's disk; waiting for the server's acknowledgements", "unacknowledged_bytes", l.w-l.a)
	case !l.warned && noSpace(cause):
		l.warned = true
		l.log.Warn("outbox: no space left on the state dir's disk; the agent's output waits until there is room (nothing is dropped)",
			"dir", l.dir, "err", cause)
	case !l.warned:
		l.warned = true
		l.log.Error("outbox: the state dir's disk refuses writes; the agent's output waits until it accepts them (nothing is dropped)",
			"dir", l.dir, "err", cause)
	}
	freed := l.freed
	if wait && !*waiting {
		*waiting = true
		l.spaceWaiters++
	}
	l.mu.Unlock()
	select {
	case l.ready <- struct{}{}: // the uploader posts the rest, or reports the wait
	default:
	}
	if !wait {
		return false, nil
	}
	t := time.NewTimer(spaceRetry)
	defer t.Stop()
	select {
	case <-freed:
	case <-t.C:
	case <-l.stopWaiting: // tried once more, then given up (l.giveUp)
	case <-ctx.Done():
		return false, fmt.Errorf("outbox: the state dir's disk refused a write (%v): %w", cause, ctx.Err())
	}
	return true, nil
}

// reclaim makes room in the log at once; l.mu is held. Segments are
// removed once acknowledged, but the active one only after it fills
// (MaxBytes/8), which a nearly full disk may never allow. So the active
// segment is rolled: removed now when the server has acknowledged all of
// it (true: try again), or by the Ack that covers it.
func (l *Log) reclaim() bool {
	if l.segs[len(l.segs)-1].size == 0 {
		return false
	}
	if err := l.roll(); err != nil {
		l.log.Debug("outbox: cannot start a new segment", "err", err)
		return false
	}
	before := len(l.segs)
	if err := l.compact(); err != nil {
		l.log.Warn("outbox: acknowledged segments not removed", "err", err)
		return false
	}
	return len(l.segs) < before
}

// spaceAgain ends a wait for space after a write succeeded; l.mu is held.
// A write that did not wait ends it only when no Append waits: a small
// event (a heartbeat) may fit in the room a larger one waits for more of.
func (l *Log) spaceAgain(waited bool) {
	if l.spaceSince.IsZero() || (!waited && l.spaceWaiters > 0) {
		return
	}
	if l.warned {
		l.log.Info("outbox: the state dir's disk takes writes again; the agent's output resumes", "waited", time.Since(l.spaceSince).Round(time.Millisecond))
	}
	l.spaceSince, l.warned, l.blockCause = time.Time{}, false, nil
}

// Waiting is when Append started waiting for a write that only others
// can let through (it found the log holding nothing unacknowledged: space
// others must free, or a disk that refuses writes), and the disk's last
// refusal; zero and nil when it is not waiting. It stays set until the
// wait is over (spaceAgain), although a small event may be logged
// meanwhile.
func (l *Log) Waiting() (since time.Time, cause error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.warned {
		return time.Time{}, nil
	}
	return l.spaceSince, l.blockCause
}

// StopWaiting makes Append give up, from now on, on a write the disk
// refuses, instead of waiting: agentd is stopping, and an event that
// cannot be logged then has nowhere to wait (the agent is being stopped
// and its output read to the end). Waiting at MaxBytes is not affected:
// the uploader still posts what is logged, which frees that.
func (l *Log) StopWaiting() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.giveUp {
		l.giveUp = true
		close(l.stopWaiting)
	}
}

// NoSpace reports whether err, a cause from Waiting, is a want of space
// (rather than a disk that refuses writes).
func NoSpace(err error) bool { return noSpace(err) }

// Unlogged stamps ev with the next agentSeq without writing it, for an
// event agentd may lose (a heartbeat, a notice that the disk is full)
// while the disk has no room for it. It is the reader's (like Next): ok is
// false unless Next has returned everything logged, so that ev, posted
// now, follows every logged event (the server takes an agentSeq at or
// below the highest it has for a duplicate), and unless the agentSeq is
// within the durable reservation.
func (l *Log) Unlogged(ev protocol.Event) (rec Record, ok bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.r < l.w || l.next > l.reserved {
		return Record{}, false, nil
	}
	ev.AgentSeq = l.next
	payload, err := ev.MarshalJSON()
	if err != nil {
		return Record{}, false, fmt.Errorf("encode %s event: %w", ev.Type, err)
	}
	l.next++
	return Record{Seq: ev.AgentSeq, Data: payload}, true, nil
}

// rewrite replaces the content of the file at path in place, for
// writeFile when its new file found no room: the file's own blocks hold
// these few bytes, so a full disk does not keep the cursor, the open turn
// or the conversation from being recorded. A stale cursor would have a
// restarted agentd run a prompt again, and a stale turn close a turn
// again. Unlike the rename, a power loss in the middle of the write could
// leave a mix of old and new bytes, so it is the fallback only, and only
// when the file already has the blocks the data needs (else the write
// would stop halfway).
func rewrite(path string, data []byte, durable bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Blocks*512 < int64(len(data)) {
		return errors.New("no room in the file's own blocks")
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		return err
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		return err
	}
	if durable {
		return f.Sync()
	}
	return nil
}
