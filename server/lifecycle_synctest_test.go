package server

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/hub"
	"github.com/rein-ai/rein/server/internal/sqlite"
	"github.com/rein-ai/rein/server/store"
)

// bubbleWriter runs a writer on a real SQLite file inside a synctest
// bubble, where time is the bubble's fake clock: the lifecycle timeouts
// are reached by time.Sleep without waiting for real.
func bubbleWriter(t *testing.T, path string, opts Options) (*writer, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return bubbleWriterOn(t, st, st, opts), st
}

// bubbleWriterOn runs a writer on db, a wrapper of the SQLite store
// st (a disk made full on demand), in a synctest bubble; st is closed
// when the test ends.
func bubbleWriterOn(t *testing.T, db Store, st *sqlite.Store, opts Options) *writer {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w := newWriter(db, hub.New(0, 0), opts.Logger, opts.withDefaults(), newTokenIndex())
	if err := w.load(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.startup()
	go w.run()
	t.Cleanup(func() {
		w.stop()
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	return w
}

func statusOf(t *testing.T, st *sqlite.Store, id string) protocol.SessionStatus {
	t.Helper()
	rec, err := st.Session(context.Background(), id)
	if protocol.CodeOf(err) == protocol.CodeNotFound {
		return "removed"
	}
	if err != nil {
		t.Fatal(err)
	}
	return rec.Status
}

func mustCall[T any](t *testing.T, w *writer, req request, r reply[T]) T {
	t.Helper()
	v, err := call(context.Background(), w, req, r)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The bootstrap and heartbeat timeouts fire exactly at their deadline, on
// the fake clock, and are published on the session stream. A session
// whose sandbox posted events but never opened the command stream stays
// bootstrapping (no sandbox could take a prompt) and, at the bootstrap
// deadline, is kept as disconnected with its events.
func TestLifecycleTimeouts(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		w, st := bubbleWriter(t, filepath.Join(t.TempDir(), "rein.db"), Options{BootstrapTimeout: 3 * time.Minute, HeartbeatTimeout: 45 * time.Second})
		sessions := w.hub.Subscribe(sessionsTopic, nil)
		defer sessions.Close()
		create := func(id string) {
			r := newReply[protocol.Session]()
			_, h := newSandboxToken()
			mustCall(t, w, &createReq{id: id, sandbox: h, reply: r}, r)
		}
		start := time.Now() // the fake clock: createdAt of both
		create("doomed")
		create("kept")
		r := newReply[openedStream]()
		opened := mustCall(t, w, &openStreamReq{id: "kept", from: Sandbox{Instance: "i1"}, reply: r}, r)
		defer opened.sub.Close()

		synctest.Wait()
		check := func(when string, want map[string]protocol.SessionStatus) {
			t.Helper()
			for id, status := range want {
				if got := statusOf(t, st, id); got != status {
					t.Errorf("%s: %s is %s; want %s", when, id, got, status)
				}
			}
		}
		check("at start", map[string]protocol.SessionStatus{"doomed": protocol.StatusBootstrapping, "kept": protocol.StatusLive})

		time.Sleep(45*time.Second - time.Millisecond)
		synctest.Wait()
		check("just before the heartbeat deadline", map[string]protocol.SessionStatus{"kept": protocol.StatusLive})
		// A heartbeat moves the deadline.
		er := newReply[protocol.EventsAccepted]()
		mustCall(t, w, &eventsReq{id: "kept", from: Sandbox{Instance: "i1"}, events: []protocol.Event{{Type: protocol.EventHeartbeat}}, reply: er}, er)
		time.Sleep(45*time.Second - time.Millisecond)
		synctest.Wait()
		check("just before the moved deadline", map[string]protocol.SessionStatus{"kept": protocol.StatusLive})
		time.Sleep(time.Millisecond)
		synctest.Wait()
		check("at the heartbeat deadline", map[string]protocol.SessionStatus{"kept": protocol.StatusDisconnected, "doomed": protocol.StatusBootstrapping})

		// Its sandbox posts before opening the command stream.
		early := time.Now()
		create("early")
		er = newReply[protocol.EventsAccepted]()
		mustCall(t, w, &eventsReq{id: "early", from: Sandbox{Instance: "i1"}, events: []protocol.Event{{Type: protocol.EventAgentStarted, AgentSeq: 1, Agent: &protocol.AgentInfo{Name: "demo"}}}, reply: er}, er)
		synctest.Wait()
		check("after early's agent_started", map[string]protocol.SessionStatus{"early": protocol.StatusBootstrapping})

		time.Sleep(time.Until(start.Add(3*time.Minute)) - time.Millisecond)
		synctest.Wait()
		check("just before the bootstrap deadline", map[string]protocol.SessionStatus{"doomed": protocol.StatusBootstrapping})
		time.Sleep(time.Millisecond)
		synctest.Wait()
		check("at the bootstrap deadline", map[string]protocol.SessionStatus{"doomed": "removed", "kept": protocol.StatusDisconnected, "early": protocol.StatusBootstrapping})
		time.Sleep(time.Until(early.Add(3*time.Minute)) - time.Millisecond)
		synctest.Wait()
		check("just before early's bootstrap deadline", map[string]protocol.SessionStatus{"early": protocol.StatusBootstrapping})
		time.Sleep(time.Millisecond)
		synctest.Wait()
		check("at early's bootstrap deadline", map[string]protocol.SessionStatus{"early": protocol.StatusDisconnected})
		if evs, err := st.Events(context.Background(), "early"); err != nil || len(evs) != 1 {
			t.Errorf("early's events after the bootstrap deadline: %d, %v; want its agent_started", len(evs), err)
		}

		var got []string
		for _, m := range sessions.Take() {
			got = append(got, "event: "+m.Event+" data: "+string(m.Data))
		}
		want := []string{
			"event: session_created data: {\"session\":{\"id\":\"doomed\",\"status\":\"bootstrapping\"",
			"event: session_created data: {\"session\":{\"id\":\"kept\",\"status\":\"bootstrapping\"",
			"event: session_updated data: {\"id\":\"kept\",\"fields\":{\"status\":\"live\"}}",
			"event: session_updated data: {\"id\":\"kept\",\"fields\":{\"status\":\"disconnected\"}}",
			"event: session_created data: {\"session\":{\"id\":\"early\",\"status\":\"bootstrapping\"",
			"event: session_removed data: {\"id\":\"doomed\"}",
			"event: session_updated data: {\"id\":\"early\",\"fields\":{\"status\":\"disconnected\"}}",
		}
		if len(got) != len(want) {
			t.Fatalf("session stream:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for i := range want {
			if !strings.HasPrefix(got[i], want[i]) {
				t.Errorf("session stream [%d] = %s; want %s…", i, got[i], want[i])
			}
		}
	})
}

// On a database the process owns, a session left live by the previous
// process is disconnected as the writer starts, before any time passes; a
// bootstrap deadline continues from createdAt across the restart, spares
// a session with stored events, and one that passed while the server was
// down comes the heartbeat timeout after the start (its sandbox may have
// been dialling all along).
func TestRestartRuleOnFakeClock(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "rein.db")
		st, err := sqlite.Open(context.Background(), path, sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().UnixMilli()
		commitOps(t, st,
			store.CreateSession{Session: protocol.Session{ID: "was-live", Status: protocol.StatusLive, CreatedAt: now}},
			store.CreateSession{Session: protocol.Session{ID: "was-idle", Status: protocol.StatusIdle, CreatedAt: now}},
			store.CreateSession{Session: protocol.Session{ID: "old-boot", Status: protocol.StatusBootstrapping, CreatedAt: now - time.Minute.Milliseconds()}},
			store.CreateSession{Session: protocol.Session{ID: "overdue", Status: protocol.StatusBootstrapping, CreatedAt: now - time.Hour.Milliseconds()}},
			// Posted to before its sandbox opened the command stream.
			store.CreateSession{Session: protocol.Session{ID: "old-early", Status: protocol.StatusBootstrapping, CreatedAt: now - time.Minute.Milliseconds()}},
			store.AppendEvents{SessionID: "old-early", Events: []store.Event{{Pos: 1, Instance: "i1", AgentSeq: 1, Body: []byte(`{"type":"agent_started","agent":{"name":"demo"},"agentSeq":1,"receivedAt":1}`)}}},
		)
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		_, st = bubbleWriter(t, path, Options{BootstrapTimeout: 3 * time.Minute})
		for id, want := range map[string]protocol.SessionStatus{"was-live": protocol.StatusDisconnected, "was-idle": protocol.StatusDisconnected, "old-boot": protocol.StatusBootstrapping, "overdue": protocol.StatusBootstrapping} {
			if got := statusOf(t, st, id); got != want {
				t.Errorf("after start: %s is %s; want %s", id, got, want)
			}
		}
		time.Sleep(DefaultHeartbeatTimeout - time.Millisecond)
		synctest.Wait()
		if got := statusOf(t, st, "overdue"); got != protocol.StatusBootstrapping {
			t.Errorf("before the heartbeat timeout since the start: overdue is %s", got)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := statusOf(t, st, "overdue"); got != "removed" {
			t.Errorf("the heartbeat timeout after the start: overdue is %s; want removed", got)
		}
		time.Sleep(2*time.Minute - DefaultHeartbeatTimeout - time.Millisecond)
		synctest.Wait()
		if got := statusOf(t, st, "old-boot"); got != protocol.StatusBootstrapping {
			t.Errorf("before its deadline: old-boot is %s", got)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := statusOf(t, st, "old-boot"); got != "removed" {
			t.Errorf("at its deadline (createdAt + 3m): old-boot is %s; want removed", got)
		}
		// Its events are read from the store (no state was cached).
		if got := statusOf(t, st, "old-early"); got != protocol.StatusDisconnected {
			t.Errorf("at its deadline: old-early, which has an event, is %s; want disconnected", got)
		}
	})
}

func commitOps(t *testing.T, st Store, ops ...StoreOp) {
	t.Helper()
	if err := st.Commit(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
}

// testWriter sends server logs to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// fullDisk is the SQLite store with its disk made full on demand: commits
// fail as SQLite's do when the disk is full, reads work.
type fullDisk struct {
	*sqlite.Store
	full atomic.Bool
}

func (d *fullDisk) Commit(ctx context.Context, ops []store.Op) error {
	if d.full.Load() {
		return errors.New("database or disk is full (13)")
	}
	return d.Store.Commit(ctx, ops)
}

func (d *fullDisk) CheckWrite(ctx context.Context) error {
	if d.full.Load() {
		return errors.New("database or disk is full (13)")
	}
	return d.Store.CheckWrite(ctx)
}

// A command stream that ends while commits fail leaves the session live
// in the database, with no sandbox behind it. Once writes work again the
// close is stored within a second, as a timeout that could not be is, not
// only at the heartbeat timeout: till then the session stream, GET
// /sessions and the web view showed a sandbox that was gone.
func TestStreamCloseWhileCommitsFail(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rein.db"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		disk := &fullDisk{Store: st}
		w := bubbleWriterOn(t, disk, st, Options{HeartbeatTimeout: 45 * time.Second})
		_, h := newSandboxToken()
		cr := newReply[protocol.Session]()
		mustCall(t, w, &createReq{id: "a", sandbox: h, reply: cr}, cr)
		r := newReply[openedStream]()
		opened := mustCall(t, w, &openStreamReq{id: "a", from: Sandbox{Instance: "i1"}, reply: r}, r)
		sessions := w.hub.Subscribe(sessionsTopic, nil)
		defer sessions.Close()

		disk.full.Store(true)
		opened.sub.Close()
		w.send(&closeStreamReq{id: "a", token: opened.token})
		synctest.Wait()
		if got := statusOf(t, st, "a"); got != protocol.StatusLive {
			t.Fatalf("after the close's commit failed: %s; want live (nothing stored)", got)
		}
		disk.full.Store(false)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := statusOf(t, st, "a"); got != protocol.StatusDisconnected {
			t.Fatalf("2s after writes work again, with no stream: %s; want disconnected", got)
		}
		msgs := sessions.Take()
		if len(msgs) != 1 || string(msgs[0].Data) != `{"id":"a","fields":{"status":"disconnected"}}` {
			var got []string
			for _, m := range msgs {
				got = append(got, m.Event+" "+string(m.Data))
			}
			t.Fatalf("session stream: %q; want the one status change to disconnected", got)
		}
	})
}
