package agentd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/agentd/internal/fulldisk"
	"github.com/rein-ai/rein/agentd/internal/outbox"
	"github.com/rein-ai/rein/protocol"
)

// instances is every Rein-Instance the server saw on POSTs and streams.
func instances(srv *fakeserver.Server) map[string]bool {
	seen := map[string]bool{}
	for _, r := range append(srv.PostRequests(), srv.StreamRequests()...) {
		seen[r.Header.Get(protocol.HeaderInstance)] = true
	}
	return seen
}

// TestRestartReplaysUnacknowledgedEvents: the server stores the first POST
// but its answers are lost, so agentd retries it until it stops, with
// everything after it unposted in its outbox. The next agentd on the same
// state dir is the same instance and posts them all again with their
// agentSeqs (the first batch as duplicates); its own events continue the
// sequence.
func TestRestartReplaysUnacknowledgedEvents(t *testing.T) {
	state := t.TempDir()
	srv := fakeserver.New(t, "s1")
	srv.EventsFault = func(int) (int, bool) { return 503, true } // stored, answer lost
	d := start(t, srv, agentd.Options{StateDir: state, FlushTimeout: 100 * time.Millisecond})
	waitStarted(t, srv, 1)
	srv.Prompt("hello")
	srv.WaitState(t, "retries of the first batch", func() bool { return len(srv.PostRequests()) >= 3 })
	if err := d.stop(); err != nil {
		t.Fatalf("Run = %v; events kept in the outbox are not an error", err)
	}
	posts := len(srv.PostRequests())
	srv.EventsFault = nil // safe: no agentd is running

	d = start(t, srv, agentd.Options{StateDir: state})
	srv.WaitState(t, "a POST from the new agentd", func() bool { return len(srv.PostRequests()) > posts })
	waitStarted(t, srv, 2)
	srv.Prompt("again")
	evs := srv.Wait(t, "the second agent's turn", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventUserMessage && ev.Text == "again" }) &&
			fakeserver.Count(evs, protocol.EventTurnCompleted) >= 2
	})
	if n := len(instances(srv)); n != 1 {
		t.Errorf("%d instances across the restart, want 1", n)
	}
	var last int64
	for i, ev := range evs {
		if ev.AgentSeq <= last {
			t.Fatalf("stored event %d has agentSeq %d after %d: want every agentSeq once, in order\n%s", i, ev.AgentSeq, last, fakeserver.Format(evs))
		}
		last = ev.AgentSeq
	}
	hello := 0
	for _, ev := range evs {
		if ev.Type == protocol.EventUserMessage && ev.Text == "hello" {
			hello++
		}
	}
	if hello != 1 {
		t.Errorf("the first agent's prompt is in the transcript %d times, want once:\n%s", hello, fakeserver.Format(evs))
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenTurnIsClosedAsInterrupted: a state dir left with a turn open
// (its agentd was killed mid-turn) makes the next agentd close that turn
// as interrupted before anything else.
func TestOpenTurnIsClosedAsInterrupted(t *testing.T) {
	state := t.TempDir()
	ob, err := outbox.Open(outbox.Options{Dir: filepath.Join(state, "s1")})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []protocol.Event{
		{Type: protocol.EventTurnStarted, TurnID: "t9", Source: protocol.SourceUser},
		{Type: protocol.EventTextDelta, Delta: "cut sh"},
	} {
		if err := ob.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	ob.Close()

	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{StateDir: state})
	waitStarted(t, srv, 1)
	evs := srv.Events()
	if len(evs) < 4 || evs[0].TurnID != "t9" || evs[1].Delta != "cut sh" || !turnCompleted("t9", protocol.StopInterrupted)(evs[2]) || evs[3].Type != protocol.EventAgentStarted {
		t.Fatalf("events:\n%s\nwant the logged turn_started and text_delta, turn_completed t9 interrupted, then agent_started", fakeserver.Format(evs))
	}
	srv.Prompt("next")
	srv.Wait(t, "the next prompt's turn", func(evs []protocol.Event) bool { return fakeserver.Has(evs, turnCompleted("t1", protocol.StopEndTurn)) })
}

// TestStateOfAnotherSession: a state dir records the session's createdAt.
// Started on it, agentd asks the server first: for the same session it
// applies the state (closes the open turn as interrupted, resumes after
// its cursor); for a session deleted and created again with the same id
// it discards it and starts afresh (a new instance, no cursor, none of
// the old session's events), so the new session's first prompt runs.
func TestStateOfAnotherSession(t *testing.T) {
	for _, tc := range []struct {
		name      string
		createdAt int64
		applied   bool
		// slowStream fails the second stream attempt, the first with
		// the fresh instance: the agent's first events go out before
		// that instance holds the stream, which the server accepts.
		slowStream bool
	}{
		{"same session", 1000, true, false},
		{"created again", 2000, false, false},
		{"created again, posting before the stream", 2000, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			dir := filepath.Join(state, "s1")
			ob, err := outbox.Open(outbox.Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range []protocol.Event{
				{Type: protocol.EventTurnStarted, TurnID: "t9", Source: protocol.SourceUser},
				{Type: protocol.EventTextDelta, Delta: "cut sh"},
			} {
				if err := ob.Append(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
			saved := ob.Instance()
			if err := ob.SetCursor(5); err != nil {
				t.Fatal(err)
			}
			if err := ob.SetSession(1000); err != nil {
				t.Fatal(err)
			}
			ob.Close()

			srv := fakeserver.New(t, "s1")
			srv.CreatedAt = tc.createdAt
			if tc.slowStream {
				srv.StreamFault = func(attempt int) int {
					if attempt == 2 {
						return http.StatusServiceUnavailable
					}
					return 0
				}
			}
			if tc.applied {
				// The commands up to the saved cursor, taken before.
				for range 5 {
					srv.Prompt("taken before")
				}
			}
			start(t, srv, agentd.Options{StateDir: state})
			waitStarted(t, srv, 1)
			// In the new session commands count from 1 again, below the
			// saved cursor: applied, it would skip this prompt.
			srv.Prompt("next")
			evs := srv.Wait(t, "a prompt's turn", func(evs []protocol.Event) bool { return fakeserver.Has(evs, turnCompleted("t1", protocol.StopEndTurn)) })
			old := fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Delta == "cut sh" || ev.TurnID == "t9" })
			if old != tc.applied {
				t.Fatalf("events:\n%s\nthe saved turn t9 posted: %v; want %v", fakeserver.Format(evs), old, tc.applied)
			}
			posts := srv.PostRequests()
			if same := posts[0].Header.Get(protocol.HeaderInstance) == saved; same != tc.applied {
				t.Fatalf("posted as the saved instance %s: %v; want %v", saved, same, tc.applied)
			}
			b, err := os.ReadFile(filepath.Join(dir, "session"))
			if err != nil || strings.TrimSpace(string(b)) != strconv.FormatInt(tc.createdAt, 10) {
				t.Fatalf("session file %q, %v; want %d", b, err, tc.createdAt)
			}
		})
	}
}

// TestCommandCursor: a prompt whose turn started is not given to the next
// agentd; one accepted but not started is, once.
func TestCommandCursor(t *testing.T) {
	state := t.TempDir()
	srv := fakeserver.New(t, "s1")
	d := start(t, srv, agentd.Options{StateDir: state})
	waitStarted(t, srv, 1)
	srv.Prompt("slow: 10000")
	srv.Wait(t, "the slow turn", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventTurnStarted)) })
	queued := srv.Prompt("queued behind it")
	// Stopping cancels the slow turn; the demo agent exits without
	// starting the queued prompt.
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	evs := srv.Events()
	if fakeserver.Has(evs, func(ev protocol.Event) bool {
		return ev.Type == protocol.EventUserMessage && ev.Text == "queued behind it"
	}) {
		t.Skip("the demo agent started the queued prompt before the shutdown; nothing to redeliver")
	}
	if !fakeserver.Has(evs, turnCompleted("t1", protocol.StopCancelled)) {
		t.Fatalf("events:\n%s\nwant the slow turn cancelled by the shutdown", fakeserver.Format(evs))
	}
	streams := len(srv.StreamRequests())

	start(t, srv, agentd.Options{StateDir: state})
	evs = srv.Wait(t, "the queued prompt run by the new agentd", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventUserMessage && ev.Text == "queued behind it"
		}) &&
			fakeserver.Count(evs, protocol.EventTurnCompleted) >= 2
	})
	if got := srv.StreamRequests()[streams].Header.Get("Last-Event-ID"); got != strconv.FormatInt(queued-1, 10) {
		t.Errorf("restarted agentd resumed the command stream at Last-Event-ID %q, want %d (the started prompt)", got, queued-1)
	}
	n := 0
	for _, ev := range evs {
		if ev.Type == protocol.EventUserMessage {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d user messages, want 2 (the started prompt is not replayed):\n%s", n, fakeserver.Format(evs))
	}
}

// TestUnusableStateDirRunsInMemory: a state dir that cannot be created
// leaves agentd working as without one, with a warning that says so.
func TestUnusableStateDirRunsInMemory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, dir, want string }{
		{"none", "", "no state dir: events wait in memory only"},
		{"not a directory", file, "state dir not usable: events wait in memory only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeserver.New(t, "s1")
			var logs fakeserver.Buffer
			d := start(t, srv, agentd.Options{StateDir: tc.dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			waitStarted(t, srv, 1)
			srv.Prompt("hi")
			srv.Wait(t, "the turn", func(evs []protocol.Event) bool { return fakeserver.Has(evs, turnCompleted("t1", protocol.StopEndTurn)) })
			if err := d.stop(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), "level=WARN msg=\""+tc.want) {
				t.Errorf("log does not warn %q:\n%s", tc.want, logs.String())
			}
		})
	}
}

// TestSessionCreatedAgainWhileRunning: the session is deleted and created
// again while agentd is cut off from its command stream, with
// authentication off, so no token tells the two sessions apart. agentd
// names the session its state belongs to (protocol.HeaderSessionCreated)
// on every request once it knows it, and the server refuses them: its
// heartbeats and events never enter the new session's transcript, and it
// stops as for a deleted session, keeping its state dir, which the next
// agentd on it discards: that one serves the new session afresh.
func TestSessionCreatedAgainWhileRunning(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stateDir bool
	}{{"state dir", true}, {"in memory", false}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeserver.New(t, "s1")
			srv.CreatedAt = 1000
			var cut atomic.Bool
			srv.StreamFault = func(int) int {
				if cut.Load() {
					return http.StatusServiceUnavailable
				}
				return 0
			}
			var state string
			if tc.stateDir {
				state = t.TempDir()
			}
			d := start(t, srv, agentd.Options{StateDir: state, HeartbeatInterval: 20 * time.Millisecond})
			waitStarted(t, srv, 1)
			srv.Prompt("hello")
			srv.Wait(t, "the turn", func(evs []protocol.Event) bool { return fakeserver.Has(evs, turnCompleted("t1", protocol.StopEndTurn)) })
			streams := srv.StreamRequests()
			if got := streams[len(streams)-1].Header.Get(protocol.HeaderSessionCreated); tc.stateDir && got != "" {
				t.Errorf("first connection of a fresh state dir named session %q; want none (not known yet)", got)
			}

			cut.Store(true)
			posts := len(srv.PostRequests())
			srv.Recreate(2000)
			srv.WaitState(t, "a post after the session was created again", func() bool { return len(srv.PostRequests()) > posts })
			if got := srv.PostRequests()[posts].Header.Get(protocol.HeaderSessionCreated); got != "1000" {
				t.Fatalf("post after the session was created again named session %q; want 1000, the one agentd's state belongs to", got)
			}
			err := d.wait()
			if protocol.CodeOf(err) != protocol.CodeConflict || !strings.Contains(err.Error(), "deleted and created again") {
				t.Fatalf("Run = %v; want conflict saying the session was deleted and created again", err)
			}
			if evs := srv.Events(); len(evs) != 0 {
				t.Fatalf("the new session's transcript:\n%s\nwant nothing of the old session's agentd", fakeserver.Format(evs))
			}
			if !tc.stateDir {
				return
			}
			if b, err := os.ReadFile(filepath.Join(state, "s1", "session")); err != nil || strings.TrimSpace(string(b)) != "1000" {
				t.Fatalf("state dir's session file %q, %v; want it kept, naming 1000", b, err)
			}

			// The next agentd on the state dir asks (naming the old
			// session: the server refuses without taking the stream from
			// anyone), discards it and serves the new session.
			cut.Store(false)
			streamsBefore := len(srv.StreamRequests())
			start(t, srv, agentd.Options{StateDir: state})
			waitStarted(t, srv, 1)
			if got := srv.StreamRequests()[streamsBefore].Header.Get(protocol.HeaderSessionCreated); got != "1000" {
				t.Errorf("the restarted agentd's first request named session %q; want 1000, that of its state dir", got)
			}
			srv.Prompt("new first")
			evs := srv.Wait(t, "the new session's first turn", func(evs []protocol.Event) bool {
				return fakeserver.Has(evs, turnCompleted("t1", protocol.StopEndTurn))
			})
			if fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventUserMessage && ev.Text == "hello" }) {
				t.Fatalf("the new session's transcript:\n%s\nwant none of the old session's events", fakeserver.Format(evs))
			}
		})
	}
}

// TestUnreadableOutboxStopsAgentd: a state dir whose outbox the disk
// fails to read (EIO, from the kernel) stops agentd with an error naming
// the segment, before it takes the session's command stream. It used to
// cut the outbox where the read failed, losing the events after it; a
// state dir it could not open made it run in memory as a new instance,
// which left the events the outbox holds unposted for good. Once the
// disk reads again, the next agentd posts every one.
func TestUnreadableOutboxStopsAgentd(t *testing.T) {
	state, fail := fulldisk.Unreadable(t)
	const n = 400
	seg := logNotices(t, filepath.Join(state, "s1"), n)
	segs := []string{seg}
	repair := fail(seg, 16<<10)
	var err error

	srv := fakeserver.New(t, "s1")
	streamed := make(chan struct{}, 1)
	srv.StreamFault = func(int) int {
		select {
		case streamed <- struct{}{}:
		default:
		}
		return 0
	}
	d := start(t, srv, agentd.Options{StateDir: state})
	timeout := time.NewTimer(fakeserver.WaitTimeout)
	defer timeout.Stop()
	select {
	case err = <-d.done:
		d.once.Do(func() { d.err = err })
	case <-streamed:
		repair()
		t.Fatal("agentd went on with an outbox it could not read")
	case <-timeout.C:
		t.Fatal("agentd neither stopped nor connected")
	}
	srv.StreamFault = nil // safe: no agentd is running
	repair()
	if err == nil || !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), filepath.Base(segs[0])) {
		t.Fatalf("Run = %v, want an error with EIO naming %s", err, filepath.Base(segs[0]))
	}
	if got := len(srv.StreamRequests()); got != 0 {
		t.Errorf("%d command stream requests from an agentd that could not read its state", got)
	}

	start(t, srv, agentd.Options{StateDir: state})
	evs := srv.Wait(t, "every logged event", func(evs []protocol.Event) bool { return fakeserver.Count(evs, protocol.EventNotice) >= n })
	i := 0
	for _, ev := range evs {
		if ev.Type != protocol.EventNotice {
			continue
		}
		if want := fmt.Sprintf("n%03d ", i+1); !strings.HasPrefix(ev.Message, want) {
			t.Fatalf("notice %d is %.10q, want %q", i, ev.Message, want)
		}
		i++
	}
}

// TestReadOnlyOutboxWithEventsStopsAgentd: agentd starts on a state dir
// whose disk turned read-only (ext4 after an error) while it held logged
// events. It ran in memory, a new instance, and the server would refuse
// the old instance's posts from then on: those events never reached the
// transcript, though the README says the next agentd posts them. It
// stops now, naming the dir, connects nowhere, and leaves the events for
// an agentd started on the repaired disk.
func TestReadOnlyOutboxWithEventsStopsAgentd(t *testing.T) {
	state, fail := fulldisk.Breakable(t)
	dir := filepath.Join(state, "s1")
	segs := []string{logNotices(t, dir, 10)}
	before, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	fail()

	srv := fakeserver.New(t, "s1")
	d := start(t, srv, agentd.Options{StateDir: state})
	timeout := time.NewTimer(fakeserver.WaitTimeout)
	defer timeout.Stop()
	select {
	case err = <-d.done:
		d.once.Do(func() { d.err = err })
	case <-timeout.C:
		t.Fatal("agentd did not stop")
	}
	if err == nil || !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), filepath.Base(segs[0])) {
		t.Fatalf("Run = %v; want an error with EROFS naming %s and its segment", err, dir)
	}
	if got := len(srv.StreamRequests()); got != 0 {
		t.Errorf("%d command stream requests from an agentd that could not open its state", got)
	}
	if got := srv.Events(); len(got) != 0 {
		t.Errorf("events posted by an agentd that could not open its state:\n%s", fakeserver.Format(got))
	}
	if after, err := os.ReadFile(segs[0]); err != nil || !bytes.Equal(after, before) {
		t.Errorf("the segment changed (%d bytes, was %d) or cannot be read: %v", len(after), len(before), err)
	}
}

// logNotices logs n notices ("n001 eee…") in a new outbox at dir, synced,
// and returns the one segment that holds them.
func logNotices(t *testing.T, dir string, n int) string {
	t.Helper()
	ob, err := outbox.Open(outbox.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := ob.Append(context.Background(), protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelInfo, Message: fmt.Sprintf("n%03d %s", i+1, strings.Repeat("e", 100))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ob.Sync(); err != nil {
		t.Fatal(err)
	}
	ob.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	return segs[0]
}
