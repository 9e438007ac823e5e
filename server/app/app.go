package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/internal/httpapi"
	"github.com/rein-ai/rein/server/internal/metrics"
	"github.com/rein-ai/rein/server/internal/postgres"
	"github.com/rein-ai/rein/server/internal/sqlite"
	"github.com/rein-ai/rein/server/internal/web"
)

// App is a running rein-server: the domain server (embedded, so its Go API
// is App's), its store, and the HTTP listener in front.
type App struct {
	*server.Server

	opts     Options
	log      *slog.Logger
	store    server.Store
	ownStore bool
	ln       net.Listener
	http     *http.Server
	handlers tracker
	metrics  metricsListener

	serveDone chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// New opens the store, starts the domain server (which loads the sessions
// and applies the restart rules) and starts listening. Close releases
// everything New started.
func New(opts Options) (*App, error) {
	opts = opts.withDefaults()
	if err := opts.check(); err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	a := &App{opts: opts, log: opts.Logger, store: opts.Store, serveDone: make(chan struct{})}
	if a.store == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		st, err := openStore(ctx, opts)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("new server: %w", err)
		}
		a.store, a.ownStore = st, true
	}
	m := metrics.New()
	srv, err := server.New(server.Options{
		Observer: m, Store: a.store, BootstrapTimeout: opts.BootstrapTimeout, HeartbeatTimeout: opts.HeartbeatTimeout,
		Logger: opts.Logger, Now: opts.Now,
		MaxArtifactsPerSession: opts.MaxArtifactsPerSession, MaxSessionBytes: opts.MaxSessionBytes,
		StateCacheBytes: opts.StateCacheBytes, ReplayPage: opts.ReplayPage, ReplayPageBytes: opts.ReplayPageBytes, ActiveState: opts.ActiveState,
		AuthMode: authMode(opts),
	})
	if err != nil {
		a.closeStore()
		return nil, err
	}
	a.Server = srv
	ln, err := net.Listen("tcp", net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port)))
	if err != nil {
		a.closeDomain()
		return nil, fmt.Errorf("new server: listen: %w", err)
	}
	a.ln = ln
	// The check is on the address actually bound, so a host name that
	// resolves to a public address is caught too.
	loopback := ln.Addr().(*net.TCPAddr).IP.IsLoopback()
	if opts.APIToken == "" && !loopback && !opts.InsecureNoAuth {
		_ = ln.Close()
		a.closeDomain()
		return nil, fmt.Errorf("new server: refusing to listen on %s without authentication: set an API token (--api-token-file, REIN_API_TOKEN) or pass --insecure-no-auth", ln.Addr())
	}
	api := httpapi.New(httpapi.Domain(srv), a.log, httpapi.Options{
		MaxBody: opts.MaxBody, WriteTimeout: opts.WriteTimeout, PingInterval: opts.PingInterval,
		APIToken: opts.APIToken, CORSOrigins: opts.CORSOrigins, Now: opts.Now,
		UI: web.Handler(http.HandlerFunc(httpapi.NotFound)), Observer: m, Metrics: m.Handler(), AccessLog: opts.AccessLog, TicketKey: opts.TicketKey,
		Discovery: httpapi.DiscoveryOptions{BootstrapTimeout: opts.BootstrapTimeout, HeartbeatTimeout: opts.HeartbeatTimeout,
			MaxArtifactsPerSession: opts.MaxArtifactsPerSession, MaxSessionBytes: opts.MaxSessionBytes,
			Version: opts.Version},
		// Without a token the Host is all that tells the machine's own
		// user from a page rebinding a name to 127.0.0.1 (New refused a
		// non-loopback address already). --insecure-no-auth lets anyone
		// in, a proxy in front that passes its own Host included.
		LocalHostsOnly: opts.APIToken == "" && !opts.InsecureNoAuth,
	})
	if err := a.metrics.start(opts.MetricsAddr, m, a.log); err != nil {
		_ = ln.Close()
		a.closeDomain()
		return nil, fmt.Errorf("new server: %w", err)
	}
	a.http = &http.Server{
		Handler: a.handlers.wrap(api),
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
		ErrorLog:       slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(a.serveDone)
		if err := a.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("serve", slog.Any("err", err))
		}
	}()
	a.log.Info("listening", slog.String("url", a.URL()), slog.String("db", dbName(opts, a.store)), slog.Bool("auth", opts.APIToken != ""))
	switch {
	case opts.APIToken == "" && !loopback:
		a.log.Warn("authentication is OFF on a non-loopback address (--insecure-no-auth): anyone who can reach it can read and drive every session", slog.String("addr", ln.Addr().String()))
	case opts.APIToken == "":
		a.log.Warn("authentication is off: any local process can use the API; set an API token (--api-token-file) to turn it on")
	}
	return a, nil
}

// openStore opens the database opts.DBPath names: a postgres:// URL
// selects PostgreSQL, anything else is a SQLite file.
func openStore(ctx context.Context, opts Options) (server.Store, error) {
	db := opts.DBPath
	if !postgres.IsDSN(db) {
		st, err := sqlite.Open(ctx, db, sqlite.Options{Sync: opts.Sync, Logger: opts.Logger})
		if errors.Is(err, sqlite.ErrReadOnly) {
			return nil, fmt.Errorf("%w; rein-server must be able to write the --db file, and the -wal and -shm files beside it", err)
		}
		return st, err
	}
	// Any number of replicas may share the database (store.Shared).
	return postgres.Open(ctx, db, opts.Logger)
}

// dbName is the database as logs show it: a PostgreSQL URL's password
// is left out.
func dbName(o Options, st server.Store) string {
	switch {
	case o.Store != nil:
		return "custom store"
	case o.DBPath == "":
		return sqlite.Memory
	}
	if pg, ok := st.(*postgres.Store); ok {
		return "postgres://" + pg.Name()
	}
	return o.DBPath
}

// Lost delivers, once, a store's report that the process must exit at
// once without closing it: the SQLite store's after a checkpoint's failed
// fsync (sqlite.Store.Lost). Nil (never ready) for the other stores.
func (a *App) Lost() <-chan error {
	if l, ok := a.store.(interface{ Lost() <-chan error }); ok {
		return l.Lost()
	}
	return nil
}

// Port returns the port the server listens on (the chosen one when
// Options.Port was 0).
func (a *App) Port() int { return a.ln.Addr().(*net.TCPAddr).Port }

// URL returns the server's base URL, e.g. http://127.0.0.1:4800.
func (a *App) URL() string {
	return "http://" + net.JoinHostPort(a.opts.Host, strconv.Itoa(a.Port()))
}

// Close shuts down in order: stop accepting connections and let requests
// in flight finish (their writes commit) within a deadline, ending every
// stream meanwhile (streams never end by themselves, so Shutdown would
// wait for them), then stop the writer, then close the store it opened. It
// returns once every goroutine New started has returned.
func (a *App) Close() error {
	a.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut := make(chan error, 1)
		go func() { shut <- a.http.Shutdown(ctx) }()
		a.EndStreams()
		if err := <-shut; err != nil {
			a.log.Warn("shutdown deadline passed, closing connections", slog.Any("err", err))
			_ = a.http.Close()
		}
		<-a.serveDone
		a.metrics.close()
		// Ends streams (done above) and stops the writer, which commits
		// what is queued until the same deadline: past it, every
		// connection is closed, nobody waits for those answers, and a
		// database that hangs would hold the writer for commitTimeout
		// per request queued.
		_ = a.Server.Shutdown(ctx)
		// Handlers Shutdown gave up on may still read the store: wait for
		// them before it closes.
		a.handlers.closeAndWait()
		a.closeErr = a.closeStore()
	})
	return a.closeErr
}

// closeDomain stops the domain server, then closes the store if New
// opened it.
func (a *App) closeDomain() error {
	err := a.Server.Close()
	return errors.Join(err, a.closeStore())
}

func (a *App) closeStore() error {
	if !a.ownStore {
		return nil
	}
	return a.store.Close()
}

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
			httpapi.ShuttingDown(w, r)
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

// authMode is the domain's name for how clients authenticate.
func authMode(o Options) string {
	if o.APIToken == "" {
		return "none"
	}
	return "token"
}
