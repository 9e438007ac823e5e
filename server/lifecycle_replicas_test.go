package server

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/hub"
	"github.com/rein-ai/rein/server/internal/postgres"
	"github.com/rein-ai/rein/server/pgtest"
)

// replicaWriter runs a writer on PostgreSQL database dsn, as one replica
// of several does, except that it hears nothing of the others (no
// watch): what it learns of their changes, it learns from its own
// commits' expectations failing, exactly when the test has it commit.
func replicaWriter(t *testing.T, dsn string) *writer {
	t.Helper()
	pg, err := postgres.Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// A heartbeat timeout the test never reaches: only the stream's close
	// may change the status.
	w := newWriter(pg, hub.New(0, 0), log, Options{Logger: log, HeartbeatTimeout: time.Hour}.withDefaults(), newTokenIndex())
	if err := w.load(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.startup()
	go w.run()
	t.Cleanup(func() {
		w.stop()
		pg.Close()
	})
	return w
}

// On a shared database, the replica holding a command stream may not have
// heard of another replica's change to the session when the stream ends:
// the close's commit expects the old row and is applied again on the new
// one. Applied again, it still marks the session disconnected (it used to
// find the stream's holder gone and drop the close: live, with no
// sandbox, until the heartbeat timeout). A stream the other replica took
// over meanwhile keeps the session live.
func TestReplicasStreamCloseAppliedAgain(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	a, b := replicaWriter(t, dsn), replicaWriter(t, dsn)
	_, h := newSandboxToken()
	cr := newReply[protocol.Session]()
	mustCall(t, a, &createReq{id: "s", sandbox: h, reply: cr}, cr)
	open := func(w *writer) openedStream {
		r := newReply[openedStream]()
		o := mustCall(t, w, &openStreamReq{id: "s", from: Sandbox{Instance: "i1"}, reply: r}, r)
		t.Cleanup(o.sub.Close)
		return o
	}
	// closeOn ends w's stream o and returns once the close is committed
	// (the writer takes its requests in order).
	flushes := 0
	closeOn := func(w *writer, o openedStream) {
		o.sub.Close()
		w.send(&closeStreamReq{id: "s", token: o.token})
		flushes++
		_, h := newSandboxToken()
		r := newReply[protocol.Session]()
		mustCall(t, w, &createReq{id: fmt.Sprint("flush", flushes), sandbox: h, reply: r}, r)
	}
	status := func() protocol.SessionStatus {
		t.Helper()
		rec, err := a.store.Session(context.Background(), "s")
		if err != nil {
			t.Fatal(err)
		}
		return rec.Status
	}

	o := open(a)
	// A heartbeat through b changes the row behind a's back.
	er := newReply[protocol.EventsAccepted]()
	mustCall(t, b, &eventsReq{id: "s", from: Sandbox{Instance: "i1"}, events: []protocol.Event{{Type: protocol.EventHeartbeat}}, reply: er}, er)
	closeOn(a, o)
	if got := status(); got != protocol.StatusDisconnected {
		t.Fatalf("after a's stream ended: %s; want disconnected", got)
	}

	// Taken over: the sandbox reconnects through b before a notices its
	// old stream end.
	o = open(a)
	open(b)
	closeOn(a, o)
	if got := status(); got != protocol.StatusLive {
		t.Fatalf("after a's stream ended, with b's open: %s; want live", got)
	}
}
