package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd/internal/fulldisk"
	"github.com/rein-ai/rein/protocol"
)

// waitingSince is Waiting's time.
func waitingSince(l *Log) time.Time {
	since, _ := l.Waiting()
	return since
}

// ackAll acknowledges everything logged.
func ackAll(t *testing.T, l *Log) {
	t.Helper()
	recs := drain(t, l, 1000)
	if err := l.Ack(recs[len(recs)-1]); err != nil {
		t.Fatal(err)
	}
}

// appended waits for the Append of appendAsync to return nil.
func appended(t *testing.T, done <-chan error, waiting string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Append still waits " + waiting)
	}
}

// appendAsync runs Append in the background; its result arrives on the
// channel.
func appendAsync(l *Log, ev protocol.Event) <-chan error {
	done := make(chan error, 1)
	go func() { done <- l.Append(context.Background(), ev) }()
	return done
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFullDiskFreesWhatWasAcknowledged: the active segment is removed only
// once it fills (MaxBytes/8, here 512 KiB), which a disk with less room
// than that never allows. Append on a full disk rolls it and removes what
// the server has acknowledged, instead of failing (the old outbox failed,
// and agentd killed the agent and then exited).
func TestFullDiskFreesWhatWasAcknowledged(t *testing.T) {
	dir := fulldisk.Mount(t, 1<<20)
	l := open(t, dir, MinMaxBytes)
	text := strings.Repeat("x", 1000)
	appendN(t, l, 200, text) // ~200 KB in the active segment
	ackAll(t, l)
	fulldisk.Fill(t, dir)
	appended(t, appendAsync(l, protocol.Event{Type: protocol.EventTextDelta, Delta: text}), "on a full disk with 200 KB acknowledged: it should free them")
	if got := drain(t, l, 10); len(got) != 1 || got[0].Seq != 201 {
		t.Fatalf("after the full disk, Next = %v, want agentSeq 201", seqs(got))
	}
	if b := l.Bytes(); b > 2000 {
		t.Errorf("log holds %d bytes, want only the new event's", b)
	}
}

// TestFullDiskWaitsForAcknowledgements: with the disk full of events the
// server has not acknowledged yet, Append waits, and the Ack that covers
// them frees their space.
func TestFullDiskWaitsForAcknowledgements(t *testing.T) {
	dir := fulldisk.Mount(t, 1<<20)
	l := open(t, dir, MinMaxBytes)
	text := strings.Repeat("y", 1000)
	appendN(t, l, 200, text)
	fulldisk.Fill(t, dir)
	done := appendAsync(l, protocol.Event{Type: protocol.EventTextDelta, Delta: text})
	select {
	case err := <-done:
		t.Fatalf("Append on a disk full of unacknowledged events returned %v, want it to wait for their Ack", err)
	case <-time.After(3 * spaceRetry):
	}
	if !waitingSince(l).IsZero() {
		t.Error("Waiting is set while the server's Ack can still free space")
	}
	ackAll(t, l)
	appended(t, done, "after the Ack of everything logged")
	checkSeqs(t, drain(t, l, 10), 201, 201)
}

// TestFullDiskWaitsForRoom: when the log holds nothing to free, Append
// waits for the space others free, and says so (Waiting); an event
// agentd may lose can meanwhile be posted without the log, with an
// agentSeq before the waiting event's. TryAppend does not wait.
func TestFullDiskWaitsForRoom(t *testing.T) {
	dir := fulldisk.Mount(t, 1<<20)
	l := open(t, dir, MinMaxBytes)
	appendN(t, l, 1, "before")
	ackAll(t, l)
	free := fulldisk.Fill(t, dir)
	// Removing the acknowledged event frees one page, too little for
	// this one.
	start := time.Now()
	done := appendAsync(l, protocol.Event{Type: protocol.EventTextDelta, Delta: strings.Repeat("z", 12<<10)})
	waitFor(t, "Waiting", func() bool { return !waitingSince(l).IsZero() })
	if since := waitingSince(l); since.Before(start) || since.After(time.Now()) {
		t.Errorf("Waiting = %v, want after %v", since, start)
	}
	freeRest := fulldisk.Fill(t, dir)
	if ok, err := l.TryAppend(protocol.Event{Type: protocol.EventHeartbeat}); ok || err != nil {
		t.Fatalf("TryAppend on a full disk = %v, %v; want false, nil", ok, err)
	}
	rec, ok, err := l.Unlogged(protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelWarning, Message: "full"})
	if err != nil || !ok {
		t.Fatalf("Unlogged with everything posted = %v, %v; want a record", ok, err)
	}
	var ev protocol.Event
	if err := json.Unmarshal(rec.Data, &ev); err != nil || ev.AgentSeq != rec.Seq || ev.Message != "full" || rec.Seq != 2 {
		t.Fatalf("Unlogged record %d: %s (%v); want agentSeq 2", rec.Seq, rec.Data, err)
	}
	select {
	case err := <-done:
		t.Fatalf("Append on a full disk returned %v, want it to wait", err)
	case <-time.After(2 * spaceRetry):
	}
	free()
	freeRest()
	appended(t, done, "after the space was freed")
	if !waitingSince(l).IsZero() {
		t.Error("Waiting still set after a write succeeded")
	}
	checkSeqs(t, drain(t, l, 10), 3, 3)
}

// TestUnloggedOnlyAfterEverythingLogged: an unlogged event posted before a
// logged one with a lower agentSeq would make the server drop that one as
// a duplicate, so Unlogged refuses until Next has returned everything.
func TestUnloggedOnlyAfterEverythingLogged(t *testing.T) {
	l := open(t, t.TempDir(), 0)
	appendN(t, l, 2, "logged")
	if _, ok, err := l.Unlogged(protocol.Event{Type: protocol.EventHeartbeat}); ok || err != nil {
		t.Fatalf("Unlogged with 2 events not yet read = %v, %v; want false", ok, err)
	}
	drain(t, l, 10)
	rec, ok, err := l.Unlogged(protocol.Event{Type: protocol.EventHeartbeat})
	if !ok || err != nil || rec.Seq != 3 {
		t.Fatalf("Unlogged after Next read everything = %d, %v, %v; want agentSeq 3", rec.Seq, ok, err)
	}
	appendN(t, l, 1, "after")
	checkSeqs(t, drain(t, l, 10), 4, 4)
}

// TestFullDiskStillRecordsState: the small state files are replaced by
// writing a new file and renaming it, which needs room; on a full disk
// they are rewritten in place instead. A cursor left stale would make the
// next agentd run a prompt whose turn had already started.
func TestFullDiskStillRecordsState(t *testing.T) {
	dir := fulldisk.Mount(t, 1<<20)
	l := open(t, dir, MinMaxBytes)
	if err := l.SetCursor(9); err != nil {
		t.Fatal(err)
	}
	if err := l.SetConversation("claude", "conv-1"); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 1, "acknowledged before the disk fills")
	ackAll(t, l)
	fulldisk.Fill(t, dir)
	// The first turn, on a full disk: once the segment holding its
	// turn_started is acknowledged and removed, the turn file is the
	// only record that the turn is open.
	if err := l.Append(context.Background(), protocol.Event{Type: protocol.EventTurnStarted, TurnID: "t-on-a-full-disk"}); err != nil {
		t.Fatal(err)
	}
	ackAll(t, l)
	l.mu.Lock()
	removed := l.reclaim()
	l.mu.Unlock()
	if !removed {
		t.Fatal("the acknowledged turn_started was not removed")
	}
	if err := l.SetCursor(10); err != nil {
		t.Fatalf("SetCursor on a full disk: %v", err)
	}
	if err := l.SetConversation("claude", "conv-22"); err != nil {
		t.Fatalf("SetConversation on a full disk: %v", err)
	}
	l.Close()
	l = open(t, dir, MinMaxBytes)
	if c, ok := l.Cursor(); !ok || c != 10 {
		t.Errorf("cursor after reopening = %d, %v; want 10", c, ok)
	}
	if id, open := l.OpenTurn(); !open || id != "t-on-a-full-disk" {
		t.Errorf("open turn after reopening = %q, %v; want t-on-a-full-disk", id, open)
	}
	if id, err := l.Conversation("claude"); err != nil || id != "conv-22" {
		t.Errorf("conversation after reopening = %q, %v; want conv-22", id, err)
	}
}

// TestReadOnlyDiskWaits: the state dir's disk turns read-only (ext4 after
// an error). Append waits instead of failing, Waiting names the refusal,
// the Ack of what was posted before still succeeds (the old Ack failed on
// its write, and agentd with it), and an event agentd may lose can still
// be posted without the log. A wait that ctx ends says why.
func TestReadOnlyDiskWaits(t *testing.T) {
	dir, fail := fulldisk.Breakable(t)
	l := open(t, dir, MinMaxBytes)
	appendN(t, l, 3, "before")
	recs := drain(t, l, 10)
	fail()
	if err := l.Ack(recs[len(recs)-1]); err != nil {
		t.Fatalf("Ack on a read-only disk: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*spaceRetry)
	defer cancel()
	err := l.Append(ctx, protocol.Event{Type: protocol.EventTextDelta, Delta: "waits"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "refused a write") {
		t.Fatalf("Append on a read-only disk until its deadline = %v; want the deadline, naming the refusal", err)
	}
	since, cause := l.Waiting()
	if since.IsZero() || !errors.Is(cause, syscall.EROFS) || NoSpace(cause) {
		t.Fatalf("Waiting on a read-only disk = %v, %v; want a wait caused by EROFS", since, cause)
	}
	if rec, ok, err := l.Unlogged(protocol.Event{Type: protocol.EventHeartbeat}); !ok || err != nil || rec.Seq != 4 {
		t.Fatalf("Unlogged on a read-only disk = %d, %v, %v; want agentSeq 4", rec.Seq, ok, err)
	}
	if got := drain(t, l, 10); len(got) != 0 {
		t.Fatalf("Next after refused writes = %v; want nothing", seqs(got))
	}
}

// TestStopWaitingEndsTheWait: at shutdown an event the disk refuses has
// nowhere to wait; StopWaiting ends the wait with an error saying so, and
// refused writes after it fail at once.
func TestStopWaitingEndsTheWait(t *testing.T) {
	dir := fulldisk.Mount(t, 1<<20)
	l := open(t, dir, MinMaxBytes)
	fulldisk.Fill(t, dir)
	done := appendAsync(l, protocol.Event{Type: protocol.EventTextDelta, Delta: "waits"})
	waitFor(t, "the wait", func() bool { return !waitingSince(l).IsZero() })
	l.StopWaiting()
	if ok, err := l.TryAppend(protocol.Event{Type: protocol.EventHeartbeat}); ok || err != nil {
		t.Fatalf("TryAppend after StopWaiting = %v, %v; want false, nil, as for any refusal", ok, err)
	}
	for _, done := range []<-chan error{done, appendAsync(l, protocol.Event{Type: protocol.EventHeartbeat})} {
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "agentd is stopping") {
				t.Fatalf("Append after StopWaiting = %v; want it to give up, saying why", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Append still waits after StopWaiting")
		}
	}
}

// TestOpenOnAFullDisk: an agentd restarted while its state dir's disk is
// full opens its outbox (reading and cutting need no room), posts what
// it holds, and logs new events once the server's Ack frees room; a
// fresh state dir there cannot be set up, and Open says why.
func TestOpenOnAFullDisk(t *testing.T) {
	root := fulldisk.Mount(t, 1<<20)
	dir := filepath.Join(root, "s1")
	l := open(t, dir, MinMaxBytes)
	text := strings.Repeat("f", 1000)
	appendN(t, l, 50, text)
	if err := l.SetCursor(7); err != nil {
		t.Fatal(err)
	}
	before := l.w
	appendN(t, l, 1, "torn")
	l.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	truncate(t, segs[0], before+headerLen+3) // a crash cut the last write
	fulldisk.Fill(t, root)

	l = open(t, dir, MinMaxBytes)
	if c, ok := l.Cursor(); !ok || c != 7 {
		t.Errorf("cursor = %d, %v; want 7", c, ok)
	}
	if p := l.Pending(); p != 50 {
		t.Errorf("Pending = %d, want 50", p)
	}
	recs := drain(t, l, 1000)
	checkSeqs(t, recs, 1, 50)
	done := appendAsync(l, protocol.Event{Type: protocol.EventTextDelta, Delta: text})
	if err := l.Ack(recs[len(recs)-1]); err != nil {
		t.Fatal(err)
	}
	appended(t, done, "on a full disk after the Ack of everything the outbox held")
	checkAfter(t, drain(t, l, 10), 51)

	fulldisk.Fill(t, root)
	if l, err := Open(Options{Dir: filepath.Join(root, "s2"), MaxBytes: MinMaxBytes}); err == nil {
		l.Close()
		t.Fatal("Open of a new state dir on a full disk succeeded")
	} else if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Open of a new state dir on a full disk = %v, want ENOSPC named", err)
	}
}

// TestStateFileRewriteCutShort: on a full disk the small state files are
// rewritten in place (rewrite: write at 0, then truncate, then fsync).
// A power loss in the middle may keep the file's new, longer size and
// not its new bytes, which then read as zeros after the old ones ("9\n"
// rewritten to "10\n" reads "9\n\x00"). That is the old value, as good
// as a rename not yet durable: the state dir must open with it, not be
// refused as garbled (agentd would then exit at every start).
func TestStateFileRewriteCutShort(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 0)
	if err := l.SetCursor(9); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 2, "not yet acknowledged")
	l.Close()
	for _, name := range []string{"cursor", "seq"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name), append(b, 0, 0))
	}
	l, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open after a rewrite cut short: %v", err)
	}
	defer l.Close()
	if c, ok := l.Cursor(); !ok || c != 9 {
		t.Errorf("cursor = %d, %v; want 9", c, ok)
	}
	if n := l.Pending(); n != 2 {
		t.Errorf("%d events pending, want 2", n)
	}
}
