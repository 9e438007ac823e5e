package commandstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/tmaxmax/go-sse"

	"github.com/rein-ai/rein/agentd/internal/apierror"
	"github.com/rein-ai/rein/protocol"
)

// Defaults for the zero Options.
const (
	// DefaultIdleTimeout is three 15 s ping intervals: the server pings at
	// least every 15 s, so a stream silent for longer is dead even if TCP
	// has not noticed.
	DefaultIdleTimeout    = 45 * time.Second
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
	// DefaultHealthyAfter is how long a connection must stay up before its
	// end resets the backoff, so a server that accepts and immediately
	// drops us is not hammered.
	DefaultHealthyAfter = 10 * time.Second
)

// maxEventSize bounds one SSE event: one command, and the event's own
// lines around it.
const maxEventSize = protocol.MaxCommandBytes + 1<<10

// Options configures a Stream. Server, Session and Instance are required.
type Options struct {
	// Server is the base URL, for example http://127.0.0.1:4800.
	Server  string
	Session string
	// Token, when set, is sent as Authorization: Bearer. It never appears
	// in a URL or a log line.
	Token string
	// Instance is this agentd process's Rein-Instance id.
	Instance string
	// Client performs the requests; nil means a client with no Timeout
	// (a Timeout would cover reading the endless body).
	Client *http.Client
	// IdleTimeout: a stream that delivers no byte (not even a ping) for
	// this long is dropped and redialled. Default DefaultIdleTimeout.
	IdleTimeout    time.Duration
	InitialBackoff time.Duration // default DefaultInitialBackoff
	MaxBackoff     time.Duration // default DefaultMaxBackoff
	HealthyAfter   time.Duration // default DefaultHealthyAfter
	// OnConnect is called after every successful connection (200), before
	// any command of that connection. agentd re-posts agent_started here.
	OnConnect func()
	// OnSession, when set, is given the session's createdAt from every
	// successful connection whose answer carries it
	// (protocol.HeaderSessionCreated), before OnConnect. An error ends the
	// connection and Run with it: agentd's state belongs to a session that
	// was deleted and created again.
	OnSession func(createdAt int64) error
	// SessionCreated, when set, is asked on every request for the
	// createdAt of the session agentd's state belongs to; when ok it is
	// sent as protocol.HeaderSessionCreated, so a server where the session
	// was deleted and created again refuses the request (409 conflict,
	// final: apierror.IsReplaced) before it takes the Last-Event-ID as
	// acknowledged or the stream from the new session's sandbox.
	SessionCreated func() (createdAt int64, ok bool)
	// OnCommand receives each command once, in id order. It may block
	// (backpressure); it returns an error only when ctx is done.
	OnCommand func(ctx context.Context, c protocol.Command) error
	// Resume, with After, makes the first connection ask for the commands
	// after After (Last-Event-ID), as a restarted agentd does from its
	// persisted cursor. Without it the first connection gets only new
	// commands.
	Resume bool
	After  int64
	Logger *slog.Logger
}

// Stream is one sandbox's command stream. Use New, then Run.
type Stream struct {
	opts   Options
	log    *slog.Logger
	lastID int64 // highest command id handed to OnCommand
	resume bool  // send Last-Event-ID even when lastID is 0
}

// New returns a Stream with defaults filled in.
func New(opts Options) *Stream {
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = DefaultInitialBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.HealthyAfter <= 0 {
		opts.HealthyAfter = DefaultHealthyAfter
	}
	if opts.OnConnect == nil {
		opts.OnConnect = func() {}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Stream{opts: opts, log: log.With("component", "commandstream"), lastID: opts.After, resume: opts.Resume}
}

// LastID returns the highest command id delivered so far (0 for none). It
// is only meaningful after Run has returned.
func (s *Stream) LastID() int64 { return s.lastID }

// NewBackOff returns the reconnect policy: exponential with jitter, capped
// at max, never giving up.
func NewBackOff(initial, max time.Duration) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = initial
	b.MaxInterval = max
	// The default gives up after 15 minutes; a sandbox must not.
	b.MaxElapsedTime = 0
	b.Reset()
	return b
}

// Run connects and reconnects until ctx is done (it then returns nil) or
// the server gives a final answer (401, 403, 404, 409 superseded, 409
// conflict: the session was deleted and created again), returned as a
// *protocol.Error wrapped with the operation.
func (s *Stream) Run(ctx context.Context) error {
	bo := NewBackOff(s.opts.InitialBackoff, s.opts.MaxBackoff)
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for attempt := 1; ; attempt++ {
		start := time.Now()
		connected, err := s.connect(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if apierror.IsFinal(err) {
			return fmt.Errorf("command stream session=%s: %w", s.opts.Session, err)
		}
		if connected && time.Since(start) >= s.opts.HealthyAfter {
			// A connection that was healthy ended (server restart, proxy
			// timeout): start over from the short interval.
			bo.Reset()
		}
		wait := bo.NextBackOff()
		s.log.Warn("command stream disconnected; reconnecting", "attempt", attempt, "in", wait, "lastEventId", s.lastID, "err", err)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
	}
}

// request builds a command stream request; Last-Event-ID is sent when
// resume is set.
func (s *Stream) request(ctx context.Context, resume bool) (*http.Request, error) {
	u := s.opts.Server + "/sessions/" + url.PathEscape(s.opts.Session) + "/commands"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("build command stream request: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	req.Header.Set(protocol.HeaderInstance, s.opts.Instance)
	if s.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.opts.Token)
	}
	if s.opts.SessionCreated != nil {
		if at, ok := s.opts.SessionCreated(); ok {
			req.Header.Set(protocol.HeaderSessionCreated, strconv.FormatInt(at, 10))
		}
	}
	if resume {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(s.lastID, 10))
	}
	return req, nil
}

// sessionCreated reads protocol.HeaderSessionCreated; ok is false when the
// server did not send it (a server from before the header), or sent what
// is no createdAt (0 or less: a proxy's or a broken server's), which
// recorded in the state dir would stop the next agentd (outbox.Open
// refuses it) and sent back would have every request refused.
func sessionCreated(h http.Header) (createdAt int64, ok bool) {
	v, err := strconv.ParseInt(h.Get(protocol.HeaderSessionCreated), 10, 64)
	return v, err == nil && v > 0
}

// Probe asks the server which session holds the id, before agentd applies
// state it saved for it: it opens the command stream without
// Last-Event-ID (so the server takes no cursor from it), reads the
// session's createdAt from the answer and hangs up without reading a
// command. With SessionCreated naming the saved session, a server where
// it was deleted and created again refuses instead (409 conflict,
// apierror.IsReplaced), taking the stream from nobody. It retries
// network errors and 5xx like Run until ctx is done (ctx's error) and
// returns final answers (401, 403, 404, 409) as a *protocol.Error wrapped
// with the operation. ok is false when the server does not send the
// header.
func (s *Stream) Probe(ctx context.Context) (createdAt int64, ok bool, err error) {
	bo := NewBackOff(s.opts.InitialBackoff, s.opts.MaxBackoff)
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for attempt := 1; ; attempt++ {
		createdAt, ok, err = s.probe(ctx)
		if err == nil || apierror.IsFinal(err) {
			return createdAt, ok, err
		}
		if ctx.Err() != nil {
			return 0, false, fmt.Errorf("probe command stream session=%s: %w", s.opts.Session, ctx.Err())
		}
		wait := bo.NextBackOff()
		s.log.Warn("could not ask the server which session this is; retrying", "attempt", attempt, "in", wait, "err", err)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return 0, false, fmt.Errorf("probe command stream session=%s: %w", s.opts.Session, ctx.Err())
		case <-timer.C:
		}
	}
}

func (s *Stream) probe(ctx context.Context) (int64, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.IdleTimeout)
	defer cancel()
	req, err := s.request(ctx, false)
	if err != nil {
		return 0, false, err
	}
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return 0, false, fmt.Errorf("probe command stream session=%s: %w", s.opts.Session, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false, fmt.Errorf("probe command stream session=%s: %w", s.opts.Session, apierror.FromResponse(resp))
	}
	at, ok := sessionCreated(resp.Header)
	return at, ok, nil
}

// connect runs one connection. connected reports whether the server
// answered 200; err says why it ended.
func (s *Stream) connect(ctx context.Context) (connected bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	req, err := s.request(ctx, s.resume || s.lastID > 0)
	if err != nil {
		return false, err
	}

	// The idle watchdog covers waiting for the response headers too: a
	// server that accepts the connection and never answers is as dead as
	// one that stops pinging.
	errIdle := fmt.Errorf("no data for %s (the server pings every 15s)", s.opts.IdleTimeout)
	watchdog := time.AfterFunc(s.opts.IdleTimeout, func() { cancel(errIdle) })
	defer watchdog.Stop()

	resp, err := s.opts.Client.Do(req)
	if err != nil {
		if c := context.Cause(ctx); errors.Is(c, errIdle) {
			err = c
		}
		return false, fmt.Errorf("open command stream: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("open command stream: %w", apierror.FromResponse(resp))
	}
	s.log.Info("command stream connected", "lastEventId", s.lastID)
	if at, ok := sessionCreated(resp.Header); ok && s.opts.OnSession != nil {
		if err := s.opts.OnSession(at); err != nil {
			return true, err
		}
	}
	s.opts.OnConnect()

	body := &activityReader{r: resp.Body, onRead: func() { watchdog.Reset(s.opts.IdleTimeout) }}
	watchdog.Reset(s.opts.IdleTimeout)
	for ev, err := range sse.Read(body, &sse.ReadConfig{MaxEventSize: maxEventSize}) {
		if err != nil {
			if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
				err = c
			}
			return true, fmt.Errorf("read command stream: %w", err)
		}
		if err := s.deliver(ctx, ev, watchdog); err != nil {
			return true, err
		}
	}
	return true, errors.New("command stream ended")
}

// deliver hands one SSE event to OnCommand unless it is a redelivery.
func (s *Stream) deliver(ctx context.Context, ev sse.Event, watchdog *time.Timer) error {
	if ev.Type != protocol.SSECommand {
		s.log.Debug("ignoring SSE event", "event", ev.Type)
		return nil
	}
	var c protocol.Command
	if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
		s.log.Error("ignoring malformed command", "err", err)
		return nil
	}
	if c.ID == 0 {
		// The data should carry its id; the SSE id is the same number.
		c.ID, _ = strconv.ParseInt(ev.LastEventID, 10, 64)
	}
	if c.ID <= s.lastID {
		// Ids increase strictly per session, so anything at or below the
		// last one delivered is a redelivery (an overlapping replay after
		// a reconnect): forwarding it again would run a prompt twice.
		s.log.Debug("skipping redelivered command", "id", c.ID)
		return nil
	}
	switch c.Type {
	case protocol.CommandPrompt, protocol.CommandAbort, protocol.CommandPermissionResponse:
	default:
		s.log.Warn("ignoring unknown command type", "id", c.ID, "type", c.Type)
		s.lastID = c.ID
		return nil
	}
	// A handler blocked by backpressure is not a silent server: pause the
	// watchdog so it cannot cut the connection mid-delivery.
	watchdog.Stop()
	defer watchdog.Reset(s.opts.IdleTimeout)
	if err := s.opts.OnCommand(ctx, c); err != nil {
		// Not delivered: lastID stays put, so the next connection's
		// Last-Event-ID asks for this command again.
		return fmt.Errorf("deliver command id=%d: %w", c.ID, err)
	}
	s.lastID = c.ID
	return nil
}

// activityReader reports every read that returned bytes, so the idle
// watchdog sees pings (comment lines, which the SSE reader never yields).
type activityReader struct {
	r      io.Reader
	onRead func()
}

func (a *activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.onRead()
	}
	return n, err
}
