package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// SessionWatcher follows GET /sessions/stream, keeps the current records,
// and records every status each session went through and every removal.
type SessionWatcher struct {
	c *Client

	mu       sync.Mutex
	sessions map[string]protocol.Session
	history  map[string][]protocol.SessionStatus
	removed  map[string]bool
	changed  chan struct{}

	cancel context.CancelFunc
	done   chan struct{}
}

// WatchSessions starts following the session stream (all projects).
func WatchSessions(ctx context.Context, c *Client) *SessionWatcher {
	ctx, cancel := context.WithCancel(ctx)
	w := &SessionWatcher{c: c, sessions: map[string]protocol.Session{}, history: map[string][]protocol.SessionStatus{},
		removed: map[string]bool{}, changed: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go w.run(ctx)
	return w
}

func (w *SessionWatcher) run(ctx context.Context) {
	defer close(w.done)
	for ctx.Err() == nil {
		_ = w.once(ctx)
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

func (w *SessionWatcher) once(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.c.Base+"/sessions/stream", nil)
	if err != nil {
		return err
	}
	if w.c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+w.c.Token)
	}
	resp, err := w.c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &HTTPError{Status: resp.StatusCode}
	}
	r := NewSSEReader(resp.Body)
	for {
		ev, err := r.Next()
		if err != nil {
			return err
		}
		w.apply(ev)
	}
}

func (w *SessionWatcher) apply(ev SSEEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer func() { close(w.changed); w.changed = make(chan struct{}) }()
	switch ev.Event {
	case protocol.SSESessionSnapshot, protocol.SSESessionCreated:
		var p protocol.SessionPayload
		if json.Unmarshal([]byte(ev.Data), &p) == nil {
			w.sessions[p.Session.ID] = p.Session
			w.record(p.Session.ID, p.Session.Status)
		}
	case protocol.SSESessionUpdated:
		var u protocol.SessionUpdated
		if json.Unmarshal([]byte(ev.Data), &u) == nil {
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
		}
	case protocol.SSESessionRemoved:
		var r protocol.SessionRemoved
		if json.Unmarshal([]byte(ev.Data), &r) == nil {
			delete(w.sessions, r.ID)
			w.removed[r.ID] = true
		}
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
