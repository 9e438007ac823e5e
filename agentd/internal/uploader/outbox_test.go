package uploader

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd/internal/outbox"
	"github.com/rein-ai/rein/protocol"
)

func openOutbox(t *testing.T, dir string) *outbox.Log {
	t.Helper()
	ob, err := outbox.Open(outbox.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	return ob
}

func checkStoredOnce(t *testing.T, stored []protocol.Event, n int) {
	t.Helper()
	if len(stored) != n {
		t.Fatalf("server stored %d events, want %d", len(stored), n)
	}
	var last int64
	for i, ev := range stored {
		if ev.AgentSeq <= last || ev.Message != notice(i).Message {
			t.Fatalf("stored[%d] = agentSeq %d %q, want an agentSeq above %d and %q", i, ev.AgentSeq, ev.Message, last, notice(i).Message)
		}
		last = ev.AgentSeq
	}
}

// TestOutboxPostsInOrderThroughRetries runs the uploader on an outbox
// against a server that fails its first answers, one of them after
// storing the batch.
func TestOutboxPostsInOrderThroughRetries(t *testing.T) {
	ob := openOutbox(t, t.TempDir())
	f := &fakeServer{handler: func(attempt int, body []byte) (int, bool, time.Duration) {
		switch attempt {
		case 1:
			return http.StatusServiceUnavailable, false, 0
		case 2:
			return http.StatusServiceUnavailable, true, 0 // stored, answer lost
		}
		return http.StatusAccepted, true, 0
	}}
	u := newTest(f, Options{BatchMax: 7, Outbox: ob, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	stop := run(u)
	const n = 100
	for i := range n {
		if err := u.Enqueue(t.Context(), notice(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	_, stored, _ := f.snapshot()
	checkStoredOnce(t, stored, n)
	if p := ob.Pending(); p != 0 {
		t.Fatalf("outbox has %d unacknowledged events after everything was stored", p)
	}
}

// TestOutboxReplaysAfterRestart: an agentd whose server never answered
// dies with its events in the outbox; the next one, on the same state
// dir, posts them with their original agentSeqs and instance.
func TestOutboxReplaysAfterRestart(t *testing.T) {
	dir := t.TempDir()
	ob := openOutbox(t, dir)
	down := &fakeServer{handler: func(int, []byte) (int, bool, time.Duration) {
		return http.StatusServiceUnavailable, false, 0
	}}
	u := newTest(down, Options{Outbox: ob, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	const n = 30
	for i := range n {
		if err := u.Enqueue(t.Context(), notice(i)); err != nil {
			t.Fatal(err)
		}
	}
	cancel() // agentd dies with nothing delivered
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	inst := ob.Instance()
	ob.Close()

	ob = openOutbox(t, dir)
	if ob.Instance() != inst {
		t.Fatalf("instance changed across the restart: %q, then %q", inst, ob.Instance())
	}
	up := &fakeServer{}
	u = newTest(up, Options{Outbox: ob})
	stop := run(u)
	if err := u.Enqueue(t.Context(), notice(n)); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	_, stored, _ := up.snapshot()
	checkStoredOnce(t, stored, n+1)
}

// EnqueueStamped reports the agentSeq an event is posted with before the
// server can have it, in memory and with an outbox: agentd matches a
// permission answer's request event against it (a stamp that came after
// the post could lose a race with the answer).
func TestEnqueueStampedBeforePosting(t *testing.T) {
	for _, withOutbox := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "outbox"}[withOutbox], func(t *testing.T) {
			var stamped atomic.Int64
			f := &fakeServer{handler: func(_ int, body []byte) (int, bool, time.Duration) {
				evs, err := protocol.DecodeEvents(body)
				if err != nil {
					t.Error(err)
				}
				for _, ev := range evs {
					if ev.Type == protocol.EventPermissionRequested && stamped.Load() != ev.AgentSeq {
						t.Errorf("posted the request as agentSeq %d; stamped %d by then", ev.AgentSeq, stamped.Load())
					}
				}
				return http.StatusAccepted, true, 0
			}}
			opts := Options{BatchMax: 3}
			if withOutbox {
				opts.Outbox = openOutbox(t, t.TempDir())
			}
			u := newTest(f, opts)
			stop := run(u)
			for i := range 4 {
				if err := u.Enqueue(t.Context(), notice(i)); err != nil {
					t.Fatal(err)
				}
			}
			ask := protocol.Event{Type: protocol.EventPermissionRequested, ID: "r1", Title: "May I?", Options: []protocol.PermissionOption{{ID: "allow", Name: "Allow", Kind: protocol.AllowOnce}}}
			if err := u.EnqueueStamped(t.Context(), ask, func(seq int64) { stamped.Store(seq) }); err != nil {
				t.Fatal(err)
			}
			if err := u.Enqueue(t.Context(), notice(5)); err != nil {
				t.Fatal(err)
			}
			if err := stop(); err != nil {
				t.Fatalf("Run = %v", err)
			}
			stored, _ := f.storedSeqs()
			if len(stored) != 6 || stored[4].Type != protocol.EventPermissionRequested || stored[4].AgentSeq != stamped.Load() {
				t.Fatalf("stored %+v; want the request fifth, with the agentSeq stamped (%d)", stored, stamped.Load())
			}
		})
	}
}
