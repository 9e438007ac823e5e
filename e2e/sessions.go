package e2e

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/client"
)

// SessionWatcher follows GET /sessions/stream with the client package's
// StreamSessions, keeps the current records, and records every status
// each session went through and every removal.
type SessionWatcher struct {
	c *client.Client

	mu       sync.Mutex
	sessions map[string]protocol.Session
	history  map[string][]protocol.SessionStatus
	removed  map[string]bool
	removals map[string]int // session_removed events per session
	connects int            // stream connections opened (each starts with a snapshot)
	changed  chan struct{}

	cancel context.CancelFunc
	done   chan struct{}
}

// WatchSessions starts following the session stream (all projects).
func WatchSessions(ctx context.Context, c *client.Client) *SessionWatcher {
	ctx, cancel := context.WithCancel(ctx)
	w := &SessionWatcher{c: c, sessions: map[string]protocol.Session{}, history: map[string][]protocol.SessionStatus{},
		removed: map[string]bool{}, removals: map[string]int{}, changed: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go w.run(ctx)
	return w
}

func (w *SessionWatcher) run(ctx context.Context) {
	defer close(w.done)
	// It reconnects quickly and ends only with ctx (or a permanent
	// answer, which with the suite's client token means the server is
	// gone for good); waits then time out naming what they waited for.
	_ = w.c.StreamSessions(ctx, "", client.StreamOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, func(ev client.SessionEvent) error {
		w.apply(ev)
		return nil
	})
}

func (w *SessionWatcher) apply(ev client.SessionEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() { close(w.changed); w.changed = make(chan struct{}) }()
	switch {
	case ev.Name == client.EventConnected:
		w.connects++
	case ev.Session != nil:
		w.sessions[ev.Session.ID] = *ev.Session
		w.record(ev.Session.ID, ev.Session.Status)
	case ev.Updated != nil:
		u := ev.Updated
		s := w.sessions[u.ID]
		if u.Fields.Status != nil {
			s.Status = *u.Fields.Status
			w.record(u.ID, s.Status)
		}
		if u.Fields.Summary != nil {
			sum := *u.Fields.Summary
			s.Summary = &sum
		}
		w.sessions[u.ID] = s
	case ev.Removed != "":
		delete(w.sessions, ev.Removed)
		w.removed[ev.Removed] = true
		w.removals[ev.Removed]++
	}
}

func (w *SessionWatcher) record(id string, st protocol.SessionStatus) {
	h := w.history[id]
	if len(h) == 0 || h[len(h)-1] != st {
		w.history[id] = append(h, st)
	}
}

// History is every distinct status session id went through, in order.
func (w *SessionWatcher) History(id string) []protocol.SessionStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]protocol.SessionStatus(nil), w.history[id]...)
}

// Removals is how many session_removed events for id the stream carried.
func (w *SessionWatcher) Removals(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.removals[id]
}

// WaitConnected waits until the stream is connected: from then on it
// reports every change.
func (w *SessionWatcher) WaitConnected(ctx context.Context) error {
	return w.Wait(ctx, "the session stream connected", func() bool { return w.connects > 0 })
}

// Get returns the current record of id.
func (w *SessionWatcher) Get(id string) (protocol.Session, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.sessions[id]
	return s, ok
}

// WaitStatus waits until session id has status st.
func (w *SessionWatcher) WaitStatus(ctx context.Context, id string, st protocol.SessionStatus) error {
	return w.Wait(ctx, fmt.Sprintf("session %s %s", id, st), func() bool {
		s, ok := w.sessions[id]
		return ok && s.Status == st
	})
}

// WaitRemoved waits until the stream said session id was removed.
func (w *SessionWatcher) WaitRemoved(ctx context.Context, id string) error {
	return w.Wait(ctx, "session "+id+" removed", func() bool { return w.removed[id] })
}

// Wait waits until cond (called with the watcher locked) holds.
func (w *SessionWatcher) Wait(ctx context.Context, what string, cond func() bool) error {
	for {
		w.mu.Lock()
		ok, changed := cond(), w.changed
		w.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}

// Close stops the watcher and waits for its goroutine.
func (w *SessionWatcher) Close() {
	w.cancel()
	<-w.done
}
