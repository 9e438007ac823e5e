package fakeserver

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// WaitTimeout bounds every Wait: a safety net for a broken test, never a
// pause the test relies on. REIN_TEST_WAIT_TIMEOUT (a Go duration) raises
// it where a large agent CLI starts slowly on a loaded machine (the
// test-agent-* targets set it).
var WaitTimeout = waitTimeout()

func waitTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("REIN_TEST_WAIT_TIMEOUT")); err == nil && d > 0 {
		return d
	}
	return 30 * time.Second
}

// Server is a fake Rein server for one session.
type Server struct {
	*httptest.Server
	Session string
	// PingEvery is the interval of `: ping` comments (default 15 s).
	PingEvery time.Duration
	// EventsFault, when set, is asked before each POST (attempt counts
	// from 1): a non-zero status is answered instead of 202, after storing
	// the events when store is true (a lost answer).
	EventsFault func(attempt int) (status int, store bool)
	// EventsDelay, when set, delays the answer to POST attempt n.
	EventsDelay func(attempt int) time.Duration
	// StreamFault, when set, is asked before each stream request: a
	// non-zero status is answered instead of opening the stream.
	StreamFault func(attempt int) int
	// Redeliver makes every resumed stream replay this many commands at or
	// below Last-Event-ID too (duplicate redeliveries).
	Redeliver int
	// CreatedAt, when set, is the session's createdAt the stream's answer
	// carries (protocol.HeaderSessionCreated); a real server always sends
	// it. As on rein-server, a request naming another createdAt with the
	// header is then 409 conflict. Set it before agentd starts; Recreate
	// changes it.
	CreatedAt int64

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	events  []protocol.Event
	// maxSeq is each instance's highest stored agentSeq: as on
	// rein-server, an event at or below it is a duplicate, even one never
	// stored (an agentd that posted out of order would lose it there).
	maxSeq         map[string]int64
	posts          int
	streamAttempts int
	streamRequests []*http.Request
	postRequests   []*http.Request
	commands       []protocol.Command
	deleted        bool
	current        string // instance that opened the newest stream
	// held: every instance that opened a stream. As on rein-server, a
	// POST is superseded only from an instance that held the stream and
	// lost it; one that never held it (an agentd posting before its
	// stream connects) is not.
	held        map[string]bool
	openStreams int
	dropGen     int
	recreations int // Recreate calls
}

// New starts a server for session, closed with tb's cleanup.
func New(tb testing.TB, session string) *Server {
	tb.Helper()
	s := &Server{Session: session, PingEvery: 15 * time.Second, changed: make(chan struct{}), maxSeq: map[string]int64{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sessions/{id}/commands", s.stream)
	mux.HandleFunc("POST /sessions/{id}/events", s.postEvents)
	s.Server = httptest.NewServer(mux)
	tb.Cleanup(func() {
		s.DropStreams()
		s.Server.Close()
	})
	return s
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// writeError answers as rein-server does: the status from protocol's one
// table.
func writeError(w http.ResponseWriter, code protocol.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(protocol.HTTPStatus(code))
	json.NewEncoder(w).Encode(protocol.ErrorBody{Code: code, Message: msg})
}

// writeInjected answers an injected fault: the status, with the code a
// client reads back from it alone.
func writeInjected(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(protocol.ErrorBody{Code: protocol.CodeForHTTPStatus(status), Message: "injected"})
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.streamAttempts++
	attempt := s.streamAttempts
	s.streamRequests = append(s.streamRequests, r.Clone(r.Context()))
	fault := s.StreamFault
	s.notifyLocked()
	s.mu.Unlock()
	if fault != nil {
		if status := fault(attempt); status != 0 {
			writeInjected(w, status)
			return
		}
	}
	s.mu.Lock()
	if s.deleted || r.PathValue("id") != s.Session {
		s.mu.Unlock()
		writeError(w, protocol.CodeNotFound, fmt.Sprintf("session %q not found", r.PathValue("id")))
		return
	}
	if s.recreatedLocked(r) {
		s.mu.Unlock()
		writeError(w, protocol.CodeConflict, "the session was deleted and created again")
		return
	}
	created := s.CreatedAt
	// As on rein-server, an instance that held the stream and lost it to
	// a newer one may not take it back.
	if inst := r.Header.Get(protocol.HeaderInstance); inst != "" && inst != s.current && s.held[inst] {
		s.mu.Unlock()
		writeError(w, protocol.CodeSuperseded, "a newer agentd took over")
		return
	}
	// A newer connection supersedes the older ones.
	s.current = r.Header.Get(protocol.HeaderInstance)
	if s.held == nil {
		s.held = map[string]bool{}
	}
	s.held[s.current] = true
	s.dropGen++
	gen := s.dropGen
	s.openStreams++
	sent := int64(len(s.commands)) // without Last-Event-ID: only new commands
	if h := r.Header.Get("Last-Event-ID"); h != "" {
		n, _ := strconv.ParseInt(h, 10, 64)
		sent = max(0, n-int64(s.Redeliver))
	}
	s.notifyLocked()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.openStreams--
		s.notifyLocked()
		s.mu.Unlock()
	}()

	w.Header().Set("Content-Type", "text/event-stream")
	if created != 0 {
		w.Header().Set(protocol.HeaderSessionCreated, strconv.FormatInt(created, 10))
	}
	w.WriteHeader(http.StatusOK)
	flusher := w.(http.Flusher)
	flusher.Flush()
	ping := time.NewTicker(s.PingEvery)
	defer ping.Stop()
	for {
		s.mu.Lock()
		if s.dropGen != gen || s.deleted {
			s.mu.Unlock()
			return
		}
		var out []protocol.Command
		if sent < int64(len(s.commands)) {
			out = append(out, s.commands[sent:]...)
			sent = int64(len(s.commands))
		}
		changed := s.changed
		s.mu.Unlock()
		for _, c := range out {
			b, _ := json.Marshal(c)
			fmt.Fprintf(w, "event: command\nid: %d\ndata: %s\n\n", c.ID, b)
		}
		if len(out) > 0 {
			flusher.Flush()
		}
		select {
		case <-changed:
		case <-ping.C:
			io.WriteString(w, ": ping\n\n")
			flusher.Flush()
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) postEvents(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.posts++
	attempt := s.posts
	s.postRequests = append(s.postRequests, r.Clone(r.Context()))
	fault, delay := s.EventsFault, s.EventsDelay
	deleted := s.deleted || r.PathValue("id") != s.Session
	inst := r.Header.Get(protocol.HeaderInstance)
	superseded := inst != "" && inst != s.current && s.held[inst]
	recreated := s.recreatedLocked(r)
	generation := s.recreations
	s.notifyLocked() // a request is news to WaitState, refused or not
	s.mu.Unlock()
	if delay != nil {
		if d := delay(attempt); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done():
			}
			t.Stop()
		}
	}
	switch {
	case deleted:
		writeError(w, protocol.CodeNotFound, "session not found")
		return
	case recreated:
		writeError(w, protocol.CodeConflict, "the session was deleted and created again")
		return
	case superseded:
		writeError(w, protocol.CodeSuperseded, "a newer agentd took over")
		return
	}
	status, store := 0, true
	if fault != nil {
		status, store = fault(attempt)
		if status == 0 {
			store = true
		}
	}
	var acc protocol.EventsAccepted
	if store {
		evs, err := protocol.DecodeEvents(body)
		if err != nil {
			writeError(w, protocol.CodeOf(err), err.Error())
			return
		}
		s.mu.Lock()
		if s.recreations != generation {
			// Taken in before Recreate (rein-server's writer takes a
			// request whole): stored in the deleted session.
			evs = nil
		}
		for _, ev := range evs {
			if ev.AgentSeq > 0 {
				if ev.AgentSeq <= s.maxSeq[inst] {
					acc.Duplicates++
					continue
				}
				s.maxSeq[inst] = ev.AgentSeq
			}
			s.events = append(s.events, ev)
			acc.Accepted++
		}
		s.notifyLocked()
		s.mu.Unlock()
	}
	if status != 0 {
		writeInjected(w, status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(acc)
}

// SetEventsFault sets EventsFault under the server's lock: for a test
// whose agentd runs in another process, where nothing else orders the
// test's write before the handler's read.
func (s *Server) SetEventsFault(f func(attempt int) (status int, store bool)) {
	s.mu.Lock()
	s.EventsFault = f
	s.mu.Unlock()
}

// Send stores a command, assigns its id and delivers it to open streams.
func (s *Server) Send(c protocol.Command) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.ID = int64(len(s.commands) + 1)
	s.commands = append(s.commands, c)
	s.notifyLocked()
	return c.ID
}

// Prompt sends a prompt command.
func (s *Server) Prompt(text string) int64 {
	return s.Send(protocol.Command{Type: protocol.CommandPrompt, Text: text})
}

// DropStreams closes every open command stream (a network blip).
func (s *Server) DropStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropGen++
	s.notifyLocked()
}

// Delete makes the session gone: streams end and every request is 404.
func (s *Server) Delete() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleted = true
	s.notifyLocked()
}

// Recreate deletes the session and creates it again with the same id and
// createdAt: its commands count from 1 again, its transcript is empty,
// no instance has held its stream, and open streams end.
func (s *Server) Recreate(createdAt int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.CreatedAt = createdAt
	s.recreations++
	s.commands, s.events = nil, nil
	s.maxSeq, s.held, s.current = map[string]int64{}, nil, ""
	s.dropGen++
	s.notifyLocked()
}

// recreatedLocked reports whether r names another session than this one
// (protocol.HeaderSessionCreated), one deleted since and created again.
func (s *Server) recreatedLocked(r *http.Request) bool {
	h := r.Header.Get(protocol.HeaderSessionCreated)
	return h != "" && s.CreatedAt != 0 && h != strconv.FormatInt(s.CreatedAt, 10)
}

// Supersede makes the server believe another agentd instance opened the
// stream: the current one's POSTs and reconnects get 409 superseded.
func (s *Server) Supersede() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current = "agentd-newer"
	s.dropGen++
	s.notifyLocked()
}

// Events returns the stored events in order.
func (s *Server) Events() []protocol.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]protocol.Event(nil), s.events...)
}

// StreamRequests returns a copy of every command stream request.
func (s *Server) StreamRequests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.streamRequests...)
}

// PostRequests returns a copy of every events request.
func (s *Server) PostRequests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.postRequests...)
}

// OpenStreams is how many command streams are open.
func (s *Server) OpenStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.openStreams
}

// Wait blocks until cond (called under the server's lock with the stored
// events) holds, and returns the events. It fails tb after WaitTimeout.
func (s *Server) Wait(tb testing.TB, what string, cond func(evs []protocol.Event) bool) []protocol.Event {
	tb.Helper()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok := cond(s.events)
		evs := append([]protocol.Event(nil), s.events...)
		changed := s.changed
		s.mu.Unlock()
		if ok {
			return evs
		}
		select {
		case <-changed:
		case <-deadline.C:
			tb.Fatalf("timed out waiting for %s; events so far:\n%s", what, Format(evs))
		}
	}
}

// WaitState blocks until cond holds for the server (called without
// events), for conditions on requests or streams.
func (s *Server) WaitState(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			tb.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Count returns how many events of type t are in evs.
func Count(evs []protocol.Event, t protocol.EventType) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == t {
			n++
		}
	}
	return n
}

// Has reports whether evs has an event matching pred.
func Has(evs []protocol.Event, pred func(protocol.Event) bool) bool {
	for _, ev := range evs {
		if pred(ev) {
			return true
		}
	}
	return false
}

// Format renders events one per line, without the envelope, for failures
// and golden comparisons.
func Format(evs []protocol.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		ev.AgentSeq, ev.Ts, ev.ReceivedAt = 0, 0, 0
		j, _ := json.Marshal(ev)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}
