package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/internal/tokenflags"
)

// gcPercent is the GOGC the server runs with unless GOGC is set. Ingest
// allocates per event (decoded events, stored bodies, changes) while the
// live heap stays small, so the default of 100 collects very often:
// rein-bench ingest_batch measured about 50k events/s at 200 and at 400,
// 38k at 100. The price is memory: the heap may grow to 1+GOGC/100 times
// what is live, and RSS per stored idle session (10,000 sessions) measured
// 3.3 KiB at 100, 4.5 at 200 and 6.8 at 400. 200 keeps the ingest speed
// for two thirds of 400's memory; the memory limit caps the rest.
const gcPercent = 200

// defaultMemoryLimit is the Go soft memory limit when neither
// --memory-limit nor GOMEMLIMIT is set. With a limit, GOGC's headroom is
// spent only while it fits: the collector runs more often as the heap
// nears the limit. A long-running server is held to 256 MiB of RSS (make
// soak's target); SQLite's page caches and the WAL index (not Go memory) come
// on top of the limit, 20-30 MiB under make soak, hence 192.
const defaultMemoryLimit = 192 << 20

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	stopProfile, err := startProfile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rein-server:", err)
		os.Exit(1)
	}
	ctx, stop := signalContext()
	err = newApp(os.Stdout, os.Stderr).RunContext(ctx, os.Args)
	stop()
	err = errors.Join(err, stopProfile())
	if err != nil {
		fmt.Fprintln(os.Stderr, "rein-server:", err)
		os.Exit(1)
	}
}

// signalContext is cancelled by the first SIGINT or SIGTERM, which starts
// the graceful shutdown: it waits for requests in flight (up to a
// deadline) and for the writer to commit what is queued (each commit up
// to its own). Signals are no longer caught once it is cancelled, so a
// second one ends the process at once (the signal's default action), as
// an operator pressing ^C again expects. That loses nothing acknowledged:
// a 2xx is only sent after its commit, and the database recovers at the
// next start as after a crash. Catching stops before the cancel, so by
// the time "shutting down" is logged a second signal is not swallowed.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sigs:
		case <-ctx.Done():
		}
		signal.Stop(sigs)
		cancel()
	}()
	return ctx, cancel
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:    "rein-server",
		Usage:   "the Rein HTTP/SSE server",
		Version: versionString(),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "host", Value: app.DefaultHost, EnvVars: []string{"REIN_HOST"}, Usage: "address to listen on"},
			&cli.IntFlag{Name: "port", Value: 4800, EnvVars: []string{"REIN_PORT"}, Usage: "port to listen on; 0 picks a free port"},
			&cli.StringFlag{Name: "db", Value: "rein.db", EnvVars: []string{"REIN_DB"}, Usage: `SQLite database file; ":memory:" for an in-memory database; or a postgres:// URL for PostgreSQL. A SQLite file takes one rein-server (a second one refuses to start); a PostgreSQL database takes any number of replicas`},
			&cli.StringFlag{Name: "sync", Value: "full", EnvVars: []string{"REIN_SYNC"}, Usage: `"full": a 2xx on a write means it is on disk; "normal": faster, the last acknowledged writes can be lost on power loss (SQLite only; PostgreSQL always commits with synchronous_commit=on)`},
			&cli.DurationFlag{Name: "bootstrap-timeout", Value: app.DefaultBootstrapTimeout, EnvVars: []string{"REIN_BOOTSTRAP_TIMEOUT"}, Usage: "remove sessions still bootstrapping after this long (a session with events is kept, disconnected)"},
			&cli.DurationFlag{Name: "write-timeout", Value: app.DefaultWriteTimeout, EnvVars: []string{"REIN_WRITE_TIMEOUT"}, Usage: "drop a stream client that takes in nothing of a write (at most 64 KiB of a message) within this (it resumes with Last-Event-ID)"},
			&cli.DurationFlag{Name: "heartbeat-timeout", Value: app.DefaultHeartbeatTimeout, EnvVars: []string{"REIN_HEARTBEAT_TIMEOUT"}, Usage: "mark live/idle sessions disconnected after this long without a heartbeat or event"},
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"REIN_LOG_LEVEL"}, Usage: "debug, info, warn or error"},
			&cli.Int64Flag{Name: "max-body", Value: protocol.MaxBodyBytes, EnvVars: []string{"REIN_MAX_BODY"}, Usage: "largest request body in bytes"},
			&cli.StringFlag{Name: "api-token", EnvVars: []string{"REIN_API_TOKEN"}, Usage: "client token (trimmed; printable ASCII): turns authentication on (prefer --api-token-file: argv is visible to other processes)"},
			&cli.StringFlag{Name: "api-token-file", EnvVars: []string{"REIN_API_TOKEN_FILE"}, Usage: "file holding the client token (trimmed); not together with --api-token"},
			&cli.BoolFlag{Name: "insecure-no-auth", EnvVars: []string{"REIN_INSECURE_NO_AUTH"}, Usage: "allow a non-loopback --host without an API token, and requests naming any Host (anyone who reaches the port can do anything)"},
			&cli.StringSliceFlag{Name: "cors-origin", EnvVars: []string{"REIN_CORS_ORIGINS"}, Usage: "browser origin allowed cross-origin, e.g. https://app.example.com (repeatable; env: comma-separated)"},
			&cli.IntFlag{Name: "max-artifacts-per-session", Value: app.DefaultMaxArtifactsPerSession, EnvVars: []string{"REIN_MAX_ARTIFACTS_PER_SESSION"}, Usage: "events that could take a session past this many artifacts get 413; a reserve of 1% (at least 100, at most the cap) past it takes only the events that keep the transcript true (turn, agent and permission events, tool call ends, notices, usage and session info)"},
			&cli.StringFlag{Name: "metrics-addr", EnvVars: []string{"REIN_METRICS_ADDR"}, Usage: "also serve GET /metrics without authentication on this address (e.g. 127.0.0.1:9480), for a scraper; /metrics on the API address needs the client token"},
			&cli.BoolFlag{Name: "access-log", EnvVars: []string{"REIN_ACCESS_LOG"}, Usage: "log one line per request: method, route pattern, status, duration, bytes (never a header or the query)"},
			&cli.StringFlag{Name: "stream-ticket-key-file", EnvVars: []string{"REIN_STREAM_TICKET_KEY_FILE"}, Usage: "file holding the key that signs stream tickets (at least 32 bytes, trimmed); every server behind one address must share it. Default: a random key per process"},
			&cli.StringFlag{Name: "memory-limit", EnvVars: []string{"REIN_MEMORY_LIMIT"}, Usage: `Go soft memory limit, e.g. 512MiB, 1GiB or "off"; unset: GOMEMLIMIT if set, else 192MiB. A quarter of it bounds the cached reducer states`},
			&cli.Int64Flag{Name: "max-session-bytes", Value: app.DefaultMaxSessionBytes, EnvVars: []string{"REIN_MAX_SESSION_BYTES"}, Usage: "events that would take a session's stored event log past this many bytes get 413; a reserve of 1% (at least 1 MiB, at most the cap) past it takes only the events that keep the transcript true (turn, agent and permission events, tool call ends, notices, usage and session info)"},
		},
		HideHelpCommand: true,
		Writer:          stdout,
		ErrWriter:       stderr,
		Action: func(c *cli.Context) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			if c.Int("port") < 0 || c.Int("port") > 65535 {
				return fmt.Errorf("--port %d: out of range", c.Int("port"))
			}
			// Zero would silently mean "the default" in Options: refuse it.
			for name, v := range map[string]int64{"max-body": c.Int64("max-body"), "max-artifacts-per-session": int64(c.Int("max-artifacts-per-session")), "max-session-bytes": c.Int64("max-session-bytes")} {
				if v <= 0 {
					return fmt.Errorf("--%s %d: must be positive", name, v)
				}
			}
			// The same for the timeouts: 0s would run with the default.
			for _, name := range []string{"bootstrap-timeout", "heartbeat-timeout", "write-timeout"} {
				if d := c.Duration(name); d <= 0 {
					return fmt.Errorf("--%s %s: must be positive", name, d)
				}
			}
			limit, err := memoryLimit(c.String("memory-limit"), c.IsSet("memory-limit"), os.Getenv("GOMEMLIMIT"))
			if err != nil {
				return err
			}
			debug.SetMemoryLimit(limit)
			token, err := readToken(c.String("api-token"), c.String("api-token-file"))
			if err != nil {
				return err
			}
			ticketKey, err := readTicketKey(c.String("stream-ticket-key-file"))
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
			return run(c.Context, stdout, app.Options{
				Host:                   c.String("host"),
				Port:                   c.Int("port"),
				DBPath:                 c.String("db"),
				Sync:                   c.String("sync"),
				BootstrapTimeout:       c.Duration("bootstrap-timeout"),
				HeartbeatTimeout:       c.Duration("heartbeat-timeout"),
				WriteTimeout:           c.Duration("write-timeout"),
				MaxBody:                c.Int64("max-body"),
				Logger:                 log,
				APIToken:               token,
				InsecureNoAuth:         c.Bool("insecure-no-auth"),
				CORSOrigins:            c.StringSlice("cors-origin"),
				MaxArtifactsPerSession: c.Int("max-artifacts-per-session"),
				MaxSessionBytes:        c.Int64("max-session-bytes"),
				MetricsAddr:            c.String("metrics-addr"),
				AccessLog:              c.Bool("access-log"),
				TicketKey:              ticketKey,
				StateCacheBytes:        stateCacheBytes(limit),
				Version:                versionString(),
			})
		},
	}
}

// memoryLimit is the soft memory limit to set: the flag's value when it
// was given (or its env var), else GOMEMLIMIT's (which the runtime has
// already applied and which uses the same syntax), else the default. "off"
// means no limit.
func memoryLimit(flag string, set bool, env string) (int64, error) {
	if !set || flag == "" {
		if env != "" {
			// The runtime parsed GOMEMLIMIT at start (and refused to start
			// on a bad one): read back what it applies.
			return debug.SetMemoryLimit(-1), nil
		}
		return defaultMemoryLimit, nil
	}
	n, err := parseSize(flag)
	if err != nil {
		return 0, fmt.Errorf("--memory-limit %q: %w", flag, err)
	}
	return n, nil
}

// noLimit is what debug.SetMemoryLimit takes for "no limit".
const noLimit = math.MaxInt64

// parseSize reads a byte count: a whole number with an optional unit, B,
// KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000),
// or "off" for no limit.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if strings.EqualFold(t, "off") {
		return noLimit, nil
	}
	i := strings.IndexFunc(t, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(t)
	}
	if i == 0 {
		return 0, errors.New("want a number of bytes with an optional unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB) or off")
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("number: %w", err)
	}
	units := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
		"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
	unit, ok := units[strings.TrimSpace(t[i:])]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q: want B, KiB, MiB, GiB, TiB, KB, MB, GB, TB", strings.TrimSpace(t[i:]))
	}
	if n <= 0 {
		return 0, errors.New("must be positive (or off)")
	}
	if n > math.MaxInt64/unit {
		return 0, errors.New("too large")
	}
	return n * unit, nil
}

// stateCacheBytes is the reducer-state cache's share of the memory limit:
// a quarter, leaving the rest to replays, requests and the collector's
// headroom. Without a limit the server's default applies.
func stateCacheBytes(limit int64) int64 {
	if limit == noLimit {
		return 0
	}
	return max(limit/4, 1<<20)
}

// readToken returns the client token from the flag (or its environment
// variable) or the file, trimmed: editors add a newline, and so do a
// Kubernetes secret and a value copied from a file. Giving both is a
// mistake, not a precedence rule. A token with a control character left
// inside is refused: no HTTP header can carry it, so the server would
// look healthy and no client could ever authenticate. So is one that is
// not ASCII, which the web view could never send (app.CheckAPIToken).
func readToken(token, file string) (string, error) {
	if token != "" && file != "" {
		return "", errors.New(tokenflags.Twice("--api-token", "--api-token-file"))
	}
	from := "--api-token/REIN_API_TOKEN"
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--api-token-file: %w", err)
		}
		token, from = string(b), "--api-token-file "+file
	} else if token == "" {
		return "", nil // authentication off
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", fmt.Errorf("%s is empty", from)
	}
	if err := app.CheckAPIToken(token); err != nil {
		return "", fmt.Errorf("%s: %w", from, err)
	}
	return token, nil
}

// readTicketKey reads the stream ticket key from file ("" = none: a
// random key per process). Trimmed like the token: a key written with
// echo ends in a newline that another replica's file may lack.
func readTicketKey(file string) ([]byte, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--stream-ticket-key-file: %w", err)
	}
	key := []byte(strings.TrimSpace(string(b)))
	if len(key) < app.MinTicketKeyLen {
		return nil, fmt.Errorf("--stream-ticket-key-file %s: the key is %d bytes; at least %d are required (e.g. head -c 48 /dev/urandom | base64 > %s)", file, len(key), app.MinTicketKeyLen, file)
	}
	return key, nil
}

// run serves until ctx ends (SIGINT/SIGTERM), then shuts down gracefully:
// streams end, requests in flight commit, the database closes.
func run(ctx context.Context, stdout io.Writer, opts app.Options) error {
	start := time.Now()
	srv, err := app.New(opts)
	if err != nil {
		return err
	}
	// The e2e suite and scripts parse this line: keep it exactly so.
	fmt.Fprintf(stdout, "rein-server listening on %s\n", srv.URL())
	opts.Logger.Debug("started", slog.Duration("in", time.Since(start)))
	select {
	case <-ctx.Done():
	case err := <-srv.Lost():
		// No Close: closing the database would checkpoint it over writes
		// the disk may have dropped (server/README.md, "A failed fsync").
		opts.Logger.Error("the database's disk failed an fsync: stopping now, without closing the database, so that the next start copies the whole WAL into it again; start rein-server again (a supervisor does)", slog.Any("err", err))
		return fmt.Errorf("stopped after a failed fsync of the database: %w", err)
	}
	opts.Logger.Info("shutting down", slog.String("note", "a second SIGINT/SIGTERM exits at once"))
	if err := srv.Close(); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	opts.Logger.Info("stopped")
	return nil
}
