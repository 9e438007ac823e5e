package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/httpapi"
	"github.com/rein-ai/rein/server/internal/hub"
	"github.com/rein-ai/rein/server/internal/sqlite"
	"github.com/rein-ai/rein/server/internal/web"
)

// Server is a running rein-server.
type Server struct {
	opts     Options
	log      *slog.Logger
	store    Store
	ownStore bool
	hub      *hub.Hub
	w        *writer
	ln       net.Listener
	http     *http.Server
	handlers tracker
	index    *tokenIndex

	serveDone chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// New opens the store, loads the sessions, applies the restart rules and
// starts listening. Close releases everything New started.
func New(opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if err := opts.check(); err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	s := &Server{opts: opts, log: opts.Logger, store: opts.Store, hub: hub.New(0, 0), serveDone: make(chan struct{}), index: newTokenIndex()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if s.store == nil {
		st, err := sqlite.Open(ctx, opts.DBPath, sqlite.Options{Sync: opts.Sync})
		if err != nil {
			return nil, fmt.Errorf("new server: %w", err)
		}
		s.store, s.ownStore = st, true
	}
	s.w = newWriter(s.store, s.hub, s.log, opts, s.index)
	if err := s.w.load(ctx); err != nil {
		s.closeStore()
		return nil, fmt.Errorf("new server: %w", err)
	}
	s.w.startup()
	ln, err := net.Listen("tcp", net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port)))
	if err != nil {
		s.closeStore()
		return nil, fmt.Errorf("new server: listen: %w", err)
	}
	s.ln = ln
	// The check is on the address actually bound, so a host name that
	// resolves to a public address is caught too.
	loopback := ln.Addr().(*net.TCPAddr).IP.IsLoopback()
	if opts.APIToken == "" && !loopback && !opts.InsecureNoAuth {
		_ = ln.Close()
		s.closeStore()
		return nil, fmt.Errorf("new server: refusing to listen on %s without authentication: set an API token (--api-token-file, REIN_API_TOKEN) or pass --insecure-no-auth", ln.Addr())
	}
	api := httpapi.New(service{s}, s.log, httpapi.Options{
		MaxBody: opts.MaxBody, WriteTimeout: opts.WriteTimeout, PingInterval: opts.PingInterval,
		APIToken: opts.APIToken, CORSOrigins: opts.CORSOrigins, Now: opts.Now,
		UI: web.Handler(),
		Discovery: httpapi.DiscoveryOptions{BootstrapTimeout: opts.BootstrapTimeout, HeartbeatTimeout: opts.HeartbeatTimeout,
			MaxArtifactsPerSession: opts.MaxArtifactsPerSession, MaxSessionBytes: opts.MaxSessionBytes},
	})
	s.http = &http.Server{
		Handler: s.handlers.wrap(api),
		// No WriteTimeout: it would cut every stream. Streams set a
		// deadline per write; bodies get one in the handler. A client
		// that sends headers slowly (slow loris) is cut after
		// ReadHeaderTimeout, and a kept-alive connection left idle after
		// IdleTimeout.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Requests carry a token and a few short headers; 1 MiB (the
		// default) would only serve someone trying to exhaust memory.
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	go s.w.run()
	go func() {
		defer close(s.serveDone)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", slog.Any("err", err))
		}
	}()
	s.log.Info("listening", slog.String("url", s.URL()), slog.String("db", dbName(opts)), slog.Bool("auth", opts.APIToken != ""))
	switch {
	case opts.APIToken == "" && !loopback:
		s.log.Warn("authentication is OFF on a non-loopback address (--insecure-no-auth): anyone who can reach it can read and drive every session", slog.String("addr", ln.Addr().String()))
	case opts.APIToken == "":
		s.log.Warn("authentication is off: any local process can use the API; set an API token (--api-token-file) to turn it on")
	}
	return s, nil
}

// check refuses options that would run the server unsafely.
func (o *Options) check() error {
	if o.APIToken != "" && len(o.APIToken) < MinAPITokenLen {
		return fmt.Errorf("the API token is %d bytes; at least %d are required", len(o.APIToken), MinAPITokenLen)
	}
	switch o.Sync {
	case "", sqlite.SyncFull, sqlite.SyncNormal:
	default:
		return fmt.Errorf("sync %q: want %q or %q", o.Sync, sqlite.SyncFull, sqlite.SyncNormal)
	}
	origins := make([]string, len(o.CORSOrigins)) // not the caller's slice
	for i, origin := range o.CORSOrigins {
		n, err := httpapi.CheckOrigin(origin)
		if err != nil {
			return err
		}
		origins[i] = n
	}
	o.CORSOrigins = origins
	return nil
}

func dbName(o Options) string {
	switch {
	case o.Store != nil:
		return "custom store"
	case o.DBPath == "":
		return sqlite.Memory
	}
	return o.DBPath
}

// Port returns the port the server listens on (the chosen one when
// Options.Port was 0).
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// URL returns the server's base URL, e.g. http://127.0.0.1:4800.
func (s *Server) URL() string {
	return "http://" + net.JoinHostPort(s.opts.Host, strconv.Itoa(s.Port()))
}

// Store returns the store the server uses.
func (s *Server) Store() Store { return s.store }

// Close shuts the server down: it stops accepting connections, ends every
// stream, lets requests in flight finish (their writes commit), stops the
// writer and closes the store it opened. It returns once every goroutine
// the server started has returned.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut := make(chan error, 1)
		go func() { shut <- s.http.Shutdown(ctx) }()
		// Streams never end by themselves: end them so Shutdown can finish.
		s.hub.Close()
		if err := <-shut; err != nil {
			s.log.Warn("shutdown deadline passed, closing connections", slog.Any("err", err))
			_ = s.http.Close()
		}
		<-s.serveDone
		s.w.stop()
		s.handlers.closeAndWait()
		s.closeErr = s.closeStore()
	})
	return s.closeErr
}

func (s *Server) closeStore() error {
	if !s.ownStore {
		return nil
	}
	return s.store.Close()
}

// CreatedSession is a new session's record and its sandbox token, which
// the server does not keep (only its hash): this is the one time it is
// known.
type CreatedSession = protocol.CreatedSession

// CreateSession creates a bootstrapping session with a new sandbox token;
// project "" means none.
func (s *Server) CreateSession(ctx context.Context, id, project string) (CreatedSession, error) {
	return s.createSession(ctx, id, project, "")
}

func (s *Server) createSession(ctx context.Context, id, project, prompt string) (CreatedSession, error) {
	if err := protocol.ValidateSessionID(id); err != nil {
		return CreatedSession{}, err
	}
	var p *string
	if project != "" {
		if err := protocol.ValidateProject(project); err != nil {
			return CreatedSession{}, err
		}
		p = &project
	}
	var pr *string
	if prompt != "" {
		pr = &prompt
	}
	tok, h := newSandboxToken()
	r := newReply[protocol.Session]()
	rec, err := call(ctx, s.w, &createReq{id: id, project: p, prompt: pr, sandbox: h, reply: r}, r)
	if err != nil {
		return CreatedSession{}, fmt.Errorf("create session %s: %w", id, err)
	}
	return CreatedSession{Session: rec, SandboxToken: tok}, nil
}

// GetSession returns a session record.
func (s *Server) GetSession(ctx context.Context, id string) (protocol.Session, error) {
	return s.store.Session(ctx, id)
}

// ListSessions lists sessions oldest first; project "" means all.
func (s *Server) ListSessions(ctx context.Context, project string) ([]protocol.Session, error) {
	return s.store.Sessions(ctx, project)
}

// DeleteSession removes a session and everything it owns, and ends its
// streams.
func (s *Server) DeleteSession(ctx context.Context, id string) error {
	r := newReply[struct{}]()
	if _, err := call(ctx, s.w, &deleteReq{id: id, reply: r}, r); err != nil {
		return fmt.Errorf("delete session %s: %w", id, err)
	}
	return nil
}

// SendCommand stores a command for the session's sandbox and delivers it on
// the command stream; it returns the command's id.
func (s *Server) SendCommand(ctx context.Context, id string, cmd protocol.Command) (int64, error) {
	r := newReply[int64]()
	cmdID, err := call(ctx, s.w, &commandReq{id: id, cmd: cmd, reply: r}, r)
	if err != nil {
		return 0, fmt.Errorf("send command session=%s: %w", id, err)
	}
	return cmdID, nil
}

// AppendEvents stores validated events (see protocol.DecodeEvents) from the
// sandbox instance (its Rein-Instance, "" when unknown), folds them into
// artifacts and publishes the changes.
func (s *Server) AppendEvents(ctx context.Context, id, instance string, events []protocol.Event) (protocol.EventsAccepted, error) {
	return s.appendEvents(ctx, id, instance, events, nil, nil)
}

// appendEvents: raws[i], when not nil, is events[i] as it came (see
// protocol.DecodeEventsRaw), stored as it is.
func (s *Server) appendEvents(ctx context.Context, id, instance string, events []protocol.Event, raws [][]byte, cred *[32]byte) (protocol.EventsAccepted, error) {
	r := newReply[protocol.EventsAccepted]()
	res, err := call(ctx, s.w, &eventsReq{id: id, instance: instance, events: events, raws: raws, cred: cred, reply: r}, r)
	if err != nil {
		return protocol.EventsAccepted{}, fmt.Errorf("append events session=%s: %w", id, err)
	}
	return res, nil
}

// Artifacts returns the session's artifacts as stored, ordered by seq.
func (s *Server) Artifacts(ctx context.Context, id string) ([]json.RawMessage, error) {
	list, err := s.store.Artifacts(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(list))
	for i, a := range list {
		out[i] = a.Body
	}
	return out, nil
}

// Health reports whether the server can do its work: the writer runs, the
// last write succeeded (a full disk fails writes while reads still work)
// and the store answers a read. An error has code unavailable and says why.
func (s *Server) Health(ctx context.Context) error {
	select {
	case <-s.w.done:
		return unavailable("health", errors.New("writer stopped"))
	default:
	}
	if f := s.w.failing.Load(); f != nil {
		return protocol.Errorf(protocol.CodeUnavailable, "writes are failing since %s: %s", f.since.UTC().Format(time.RFC3339), rootCause(f.err))
	}
	if err := s.store.Ping(ctx); err != nil {
		return protocol.Errorf(protocol.CodeUnavailable, "storage does not answer reads: %s", rootCause(err))
	}
	return nil
}

// rootCause is the innermost error's text ("database or disk is full"):
// what an operator needs, without the operations wrapped around it.
func rootCause(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

func encodeSSE(id int64, event string, data []byte) []byte { return httpapi.Encode(id, event, data) }

// tracker counts running handlers so Close can wait for them even when
// http.Server.Shutdown gave up on a connection.
type tracker struct {
	mu     sync.Mutex
	wg     sync.WaitGroup
	closed bool
}

func (t *tracker) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			w.Header().Set("Connection", "close")
			http.Error(w, `{"code":"unavailable","message":"server is shutting down"}`, http.StatusServiceUnavailable)
			return
		}
		t.wg.Add(1)
		t.mu.Unlock()
		defer t.wg.Done()
		h.ServeHTTP(w, r)
	})
}

func (t *tracker) closeAndWait() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.wg.Wait()
}
