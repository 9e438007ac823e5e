package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// EventConnected is the name of the event a stream handler receives at the
// start of every connection, before anything the server sends on it. On
// the session stream it means "a full snapshot follows": drop what you
// hold. On the artifact stream the snapshots that follow replace the
// artifacts they name.
const EventConnected = "connected"

// ErrStop, returned by a stream handler, ends the stream; the Stream
// method then returns nil.
var ErrStop = errors.New("stop following the stream")

// StreamOptions tune how a stream is followed. The zero value is usable.
type StreamOptions struct {
	// LastEventID resumes the artifact stream after this revision; 0
	// starts with a full snapshot.
	LastEventID int64
	// MinBackoff is the first wait before reconnecting (default 100ms);
	// it doubles, with jitter, up to MaxBackoff (default 5s), and starts
	// over after a connection that got its snapshot_complete.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// IdleTimeout drops a connection on which nothing, not even the
	// server's 15 s ping, arrived for this long, and reconnects (default
	// 45s): a half-open TCP connection would otherwise hang forever.
	IdleTimeout time.Duration
	// OnRetry, when set, is called each time a connection failed or ended
	// and the stream will reconnect after wait: the backoff, or longer
	// when the answer's Retry-After asked for longer (at most 10 minutes).
	OnRetry func(err error, wait time.Duration)
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Second, o.MinBackoff)
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 45 * time.Second
	}
	return o
}

// ArtifactEvent is one event of the artifact stream, decoded.
type ArtifactEvent struct {
	// Name is EventConnected or the SSE event name
	// (protocol.SSEArtifactSnapshot, ...).
	Name string
	// Rev is the event's revision (its SSE id); 0 for EventConnected.
	Rev int64
	// Artifact is set for artifact_snapshot and artifact_created.
	Artifact *protocol.Artifact
	// Update is set for artifact_updated.
	Update *protocol.ArtifactUpdate
	// Full is set on a snapshot_complete that ended a replay of every
	// artifact (protocol.SnapshotComplete): what the client holds that
	// this connection's replay did not send is no longer the session's.
	Full bool
	// Replaced is set on the EventConnected of a connection to another
	// session than the one followed so far: it was deleted and created
	// again under its id while the client was away. What the client
	// holds, even at the seqs the new session's replay (a full one)
	// sends again, is the old session's.
	Replaced bool
	// Data is the event's data as received (nil for EventConnected).
	Data json.RawMessage
}

// StreamArtifacts follows the artifact stream of session id, calling fn
// for every event in order, until ctx ends (it returns ctx.Err()), fn
// returns an error (it returns that error, or nil for ErrStop), or the
// server answers with a permanent error (an *Error: 400, 401, 403, 404,
// which is also how a deleted session ends the stream).
//
// After a dropped connection it reconnects with Last-Event-ID set to the
// last revision it delivered, so the server resends exactly the artifacts
// changed since (as snapshots): nothing is lost and nothing is delivered
// twice.
//
// A replay of every artifact that answered a resume (the history went
// back below the revision resumed after) and was cut before its end is
// not resumed after that revision, which the session may have passed
// again by then: the next connection replays everything again.
//
// A revision is all Last-Event-ID says: when a reconnection's answer names
// another session (protocol.HeaderSessionCreated: the session was deleted
// and created again under its id meanwhile), it starts again without it,
// and the full replay that follows replaces what fn was given.
func (c *Client) StreamArtifacts(ctx context.Context, id string, opts StreamOptions, fn func(ArtifactEvent) error) error {
	last := opts.LastEventID
	var created string
	replaced := false
	// from is the revision this connection resumed after (0: none);
	// below, that its replay went below it and has not ended yet.
	var from int64
	below := false
	same := func(h http.Header) bool {
		ok := true
		if v := h.Get(protocol.HeaderSessionCreated); v != "" && v != created {
			first := created == ""
			created = v
			replaced = !first
			ok = first
		}
		if below {
			// The last connection's replay was of every artifact (the
			// history went back below the revision it resumed after)
			// and was cut before its end. last is still that revision,
			// above what the cut replay had reached: once the session
			// has passed it again, resuming after it skips what the
			// replay had not sent, and keeps what the client holds of
			// the history that went away. Replay it all again.
			below = false
			ok = false
		}
		return ok
	}
	return c.follow(ctx, sessionPath(id)+"/stream", opts, &last, same, func(ev rawEvent) error {
		if ev.Name == EventConnected {
			r := replaced
			replaced = false
			from = last
			return fn(ArtifactEvent{Name: EventConnected, Replaced: r})
		}
		rev, _ := strconv.ParseInt(ev.ID, 10, 64)
		switch {
		case ev.Name == protocol.SSESnapshotComplete:
			below = false // the replay ended (a full one sets last below)
		case from > 0 && ev.ID != "" && rev <= from:
			// A resume sends only what changed after from: an id at
			// or below it is a replay of every artifact.
			below = true
		}
		out := ArtifactEvent{Name: ev.Name, Rev: rev, Data: json.RawMessage(ev.Data)}
		switch ev.Name {
		case protocol.SSEArtifactSnapshot, protocol.SSEArtifactCreated:
			var p protocol.ArtifactPayload
			if err := json.Unmarshal(out.Data, &p); err != nil || p.Artifact == nil {
				return fmt.Errorf("%s rev=%d: bad payload: %v", ev.Name, rev, err)
			}
			out.Artifact = p.Artifact
		case protocol.SSEArtifactUpdated:
			var u protocol.ArtifactUpdate
			if err := json.Unmarshal(out.Data, &u); err != nil {
				return fmt.Errorf("%s rev=%d: bad payload: %w", ev.Name, rev, err)
			}
			out.Update = &u
		case protocol.SSESnapshotComplete:
			var c protocol.SnapshotComplete
			if err := json.Unmarshal(out.Data, &c); err != nil {
				return fmt.Errorf("%s rev=%d: bad payload: %w", ev.Name, rev, err)
			}
			out.Full = c.Full
			if c.Full {
				// A full replay can bring the history back below what
				// this client saw (a restore): resume from where it
				// now is, not from the highest revision ever seen.
				last = c.Rev
			}
		}
		return fn(out)
	})
}

// SessionEvent is one event of the session stream, decoded.
type SessionEvent struct {
	// Name is EventConnected or the SSE event name
	// (protocol.SSESessionSnapshot, ...).
	Name string
	// Session is set for session_snapshot and session_created.
	Session *protocol.Session
	// Updated is set for session_updated.
	Updated *protocol.SessionUpdated
	// Removed is the id of a session_removed.
	Removed string
	// Data is the event's data as received (nil for EventConnected).
	Data json.RawMessage
}

// StreamSessions follows the session stream (only project's sessions
// when project is not ""), calling fn for every event, with the same
// reconnects and endings as StreamArtifacts. The session stream has no
// resume: every connection starts with a full snapshot, announced by an
// EventConnected event.
func (c *Client) StreamSessions(ctx context.Context, project string, opts StreamOptions, fn func(SessionEvent) error) error {
	path := "/sessions/stream"
	if project != "" {
		path += "?project=" + url.QueryEscape(project)
	}
	return c.follow(ctx, path, opts, nil, nil, func(ev rawEvent) error {
		out := SessionEvent{Name: ev.Name}
		if ev.Name == EventConnected {
			return fn(out)
		}
		out.Data = json.RawMessage(ev.Data)
		var err error
		switch ev.Name {
		case protocol.SSESessionSnapshot, protocol.SSESessionCreated:
			var p protocol.SessionPayload
			err = json.Unmarshal(out.Data, &p)
			out.Session = &p.Session
		case protocol.SSESessionUpdated:
			var u protocol.SessionUpdated
			err = json.Unmarshal(out.Data, &u)
			out.Updated = &u
		case protocol.SSESessionRemoved:
			var r protocol.SessionRemoved
			err = json.Unmarshal(out.Data, &r)
			out.Removed = r.ID
		}
		if err != nil {
			return fmt.Errorf("%s: bad payload: %w", ev.Name, err)
		}
		return fn(out)
	})
}

// maxRetryAfter caps how long a stream waits for a Retry-After.
const maxRetryAfter = 10 * time.Minute

// handlerError marks an error that came from the caller's handler, which
// ends the stream instead of causing a reconnect.
type handlerError struct{ err error }

func (e handlerError) Error() string { return e.err.Error() }

// follow holds a stream open, reconnecting with backoff. lastID, when not
// nil, is the revision to resume after; it is advanced as events arrive.
// same, when not nil, reports whether an answer's headers are of the
// stream lastID was counted in; when they are not, the connection is
// opened again without Last-Event-ID.
func (c *Client) follow(ctx context.Context, path string, opts StreamOptions, lastID *int64, same func(http.Header) bool, fn func(rawEvent) error) error {
	opts = opts.withDefaults()
	wait := opts.MinBackoff
	for {
		healthy, err := c.connect(ctx, path, opts, lastID, same, fn)
		var he handlerError
		if errors.As(err, &he) {
			if errors.Is(he.err, ErrStop) {
				return nil
			}
			return he.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ce *Error
		if errors.As(err, &ce) && ce.Permanent() || errors.Is(err, ErrLineTooLong) {
			return err
		}
		if healthy {
			wait = opts.MinBackoff
		}
		// Full jitter on the upper half: between wait/2 and wait.
		d := wait/2 + rand.N(wait/2+1)
		if ce != nil && ce.RetryAfter > d {
			// Asked to wait longer (a load balancer's 503 or 429 during
			// a deploy): reconnecting sooner only gets the same answer,
			// and adds to the load it is shedding. Capped, so that a
			// Retry-After of days does not end a follow in effect.
			d = min(ce.RetryAfter, maxRetryAfter)
		}
		if opts.OnRetry != nil {
			opts.OnRetry(err, d)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, opts.MaxBackoff)
	}
}

// connect holds one connection until it ends. healthy reports whether the
// server finished its replay (snapshot_complete) on it.
func (c *Client) connect(ctx context.Context, path string, opts StreamOptions, lastID *int64, same func(http.Header) bool, fn func(rawEvent) error) (healthy bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var idled atomic.Bool
	idle := time.AfterFunc(opts.IdleTimeout, func() { idled.Store(true); cancel() })
	defer idle.Stop()
	lastEventID := ""
	if lastID != nil && *lastID > 0 {
		lastEventID = strconv.FormatInt(*lastID, 10)
	}
	body, hdr, err := c.openStream(ctx, path, lastEventID)
	if err != nil {
		return false, err
	}
	if same != nil && !same(hdr) && lastEventID != "" {
		// Another session under this id: the revisions counted so far
		// are the old one's, and resuming after them would lay the new
		// one's changes over its artifacts. Start again: a full replay.
		body.Close()
		*lastID = 0
		if body, _, err = c.openStream(ctx, path, ""); err != nil {
			return false, err
		}
	}
	defer body.Close()
	if err := fn(rawEvent{Name: EventConnected}); err != nil {
		return false, handlerError{err}
	}
	r := NewEventReader(&activityReader{r: body, idle: idle, d: opts.IdleTimeout})
	for {
		ev, err := r.next()
		if err != nil {
			if idled.Load() {
				err = fmt.Errorf("GET %s: nothing received for %s", path, opts.IdleTimeout)
			} else if errors.Is(err, io.EOF) {
				err = fmt.Errorf("GET %s: the server ended the stream", path)
			}
			return healthy, err
		}
		if ev.Name == protocol.SSESnapshotComplete {
			healthy = true
		}
		if err := fn(ev); err != nil {
			return healthy, handlerError{err}
		}
		if lastID != nil && ev.ID != "" {
			if id, err := strconv.ParseInt(ev.ID, 10, 64); err == nil && id > *lastID {
				*lastID = id
			}
		}
	}
}

// OpenStream opens one connection to the stream at path (a stream route:
// "/sessions/ID/stream", "/sessions/stream", "/sessions/stream?project=P")
// with Last-Event-ID set to lastEventID when it is not "", and returns the
// event-stream body for NewEventReader; the caller closes it. A non-200
// answer is an *Error. It does not reconnect or check anything about the
// events: StreamArtifacts and StreamSessions do that; OpenStream is for
// programs that hold connections themselves (tests that drop them on
// purpose, or check the server's resume promises event by event).
func (c *Client) OpenStream(ctx context.Context, path, lastEventID string) (io.ReadCloser, error) {
	body, _, err := c.openStream(ctx, path, lastEventID)
	return body, err
}

// openStream is OpenStream, with the answer's headers.
func (c *Client) openStream(ctx context.Context, path, lastEventID string) (io.ReadCloser, http.Header, error) {
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, nil, errorFrom(resp)
	}
	if mediaType(resp) != "text/event-stream" {
		// A proxy's page read as a stream has no events and ends:
		// following it would say "the server ended the stream" at
		// every reconnect, never why.
		resp.Body.Close()
		return nil, nil, notServers(resp, "event stream")
	}
	return resp.Body, resp.Header, nil
}

// activityReader pushes the idle deadline back on every read that
// returns data (events and pings alike).
type activityReader struct {
	r    io.Reader
	idle *time.Timer
	d    time.Duration
}

func (a *activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.idle.Reset(a.d)
	}
	return n, err
}
