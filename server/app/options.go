package app

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/internal/httpapi"
	"github.com/rein-ai/rein/server/internal/sqlite"
)

// Options configure an App: the domain server's options plus the
// listener, the HTTP layer and the SQLite store. The zero value is usable:
// an in-memory database on a free port of 127.0.0.1 with the defaults
// below.
type Options struct {
	// Host to listen on (default "127.0.0.1").
	Host string
	// Port to listen on; 0 picks a free port (see App.Port).
	Port int
	// BootstrapTimeout is how long a session may stay bootstrapping (no
	// sandbox ever connected) before it is removed (default 3m).
	BootstrapTimeout time.Duration
	// HeartbeatTimeout is how long a live or idle session may go without
	// a heartbeat or event before it becomes disconnected (default 45s).
	HeartbeatTimeout time.Duration
	// PingInterval is how often idle streams get a ": ping" comment
	// (default 15s).
	PingInterval time.Duration
	// WriteTimeout bounds every write to a stream (a message over 64 KiB
	// is written in 64 KiB pieces, each bounded); a client that cannot
	// take a write within it is dropped (default 10s).
	WriteTimeout time.Duration
	// MaxBody is the largest request body accepted (default
	// protocol.MaxBodyBytes).
	MaxBody int64
	// Store replaces the SQLite store. The App does not close a Store
	// it was given; the caller does, after Close.
	Store server.Store
	// DBPath is the database used when Store is nil: a SQLite file; "" or
	// ":memory:" for an in-memory database that lives as long as the App;
	// or a postgres:// (postgresql://) URL for PostgreSQL, which any
	// number of servers (replicas) may share. A SQLite file takes one
	// server: a second one is refused at start.
	DBPath string
	// Sync is how the SQLite store syncs a commit: "full" (the default;
	// a 2xx on a write means it is on disk and survives a power loss) or
	// "normal" (faster; the last acknowledged writes before a power loss
	// can be lost, a crash of the process loses nothing). Ignored with
	// Store.
	Sync string
	// Logger receives the server's logs (default: discarded).
	Logger *slog.Logger
	// Now is the clock used for createdAt, receivedAt, heartbeats, the
	// lifecycle timeouts and stream ticket expiry (default time.Now). Tests
	// inject one.
	Now func() time.Time

	// APIToken turns authentication on: every client route then needs
	// "Authorization: Bearer <APIToken>", and the sandbox routes take it or
	// the session's sandbox token. "" turns authentication off, which New
	// allows only on a loopback address unless InsecureNoAuth is set. It
	// must be MinAPITokenLen to MaxAPITokenLen bytes of printable ASCII
	// (CheckAPIToken).
	APIToken string
	// InsecureNoAuth lets New listen on a non-loopback address without an
	// APIToken: anyone who can reach the port can then do anything.
	InsecureNoAuth bool
	// CORSOrigins are the browser origins ("https://app.example.com")
	// allowed to call the API cross-origin; none by default.
	CORSOrigins []string
	// MaxArtifactsPerSession caps a session's artifacts; events that could
	// take it past the cap get 413 (default DefaultMaxArtifactsPerSession),
	// but for those that keep the transcript true (a turn's start and
	// end, the agent's start and exit, permissions, tool call ends,
	// notices, usage and session info), up to a reserve past it.
	MaxArtifactsPerSession int
	// MetricsAddr, when set ("127.0.0.1:9480", ":0"), serves GET /metrics
	// on a listener of its own without authentication, for a scraper (see
	// metrics.go). GET /metrics on the API address is always served, behind
	// the client token when authentication is on.
	MetricsAddr string
	// AccessLog logs one line per request (method, route pattern, status,
	// duration, bytes; never a header or the query) at info level.
	AccessLog bool
	// Version is the binary's version as its --version prints it, which
	// GET /.well-known/rein.json reports. Empty: the version the Go
	// toolchain recorded ("(devel)" for a build inside the go.work
	// workspace, which records no VCS revision either).
	Version string
	// MaxSessionBytes caps a session's stored event log in bytes; events
	// that would take it past the cap get 413 (default
	// DefaultMaxSessionBytes), but for those that keep the transcript
	// true, up to a reserve past it.
	MaxSessionBytes int64
	// TicketKey signs the stream tickets (POST …/stream-ticket). Every
	// server behind one address must share it, or a ticket issued by one
	// is refused (401) by the next: replicas, and a restart within a
	// ticket's minute. Empty: a random key per process. At least
	// MinTicketKeyLen bytes.
	TicketKey []byte
	// StateCacheBytes bounds the estimated size of the reducer states the
	// server keeps in memory (default server.DefaultStateCacheBytes).
	StateCacheBytes int64
	// ReplayPage is how many artifacts a replay or GET /artifacts reads
	// per read transaction (default server.DefaultReplayPage).
	ReplayPage int
	// ReplayPageBytes bounds those pages by the size of their artifacts
	// (one at least; default server.DefaultReplayPageBytes).
	ReplayPageBytes int
	// ActiveState is how long after its last use a reducer state is spared
	// by the byte budget (default server.DefaultActiveState; negative:
	// none).
	ActiveState time.Duration
}

// Defaults.
const (
	DefaultHost             = "127.0.0.1"
	DefaultBootstrapTimeout = server.DefaultBootstrapTimeout
	DefaultHeartbeatTimeout = server.DefaultHeartbeatTimeout
	DefaultPingInterval     = 15 * time.Second
	DefaultWriteTimeout     = 10 * time.Second

	DefaultMaxArtifactsPerSession = server.DefaultMaxArtifactsPerSession
	DefaultMaxSessionBytes        = server.DefaultMaxSessionBytes
	// MinAPITokenLen is the shortest APIToken accepted: a shorter one is
	// guessable, and a client token guards everything.
	MinAPITokenLen = 16
	// MaxAPITokenLen is the longest APIToken accepted: the server reads
	// at most 64 KiB of request headers (and answers a longer request 431
	// before any handler sees it), and common proxies refuse a header line
	// of more than 8 KiB. A longer token would leave a server that starts
	// and looks healthy while no client can authenticate.
	MaxAPITokenLen = 4096
	// MinTicketKeyLen is the shortest TicketKey accepted (an HMAC-SHA256
	// key shorter than the hash weakens it).
	MinTicketKeyLen = httpapi.MinTicketKeyLen
)

func (o Options) withDefaults() Options {
	if o.Host == "" {
		o.Host = DefaultHost
	}
	if o.BootstrapTimeout <= 0 {
		o.BootstrapTimeout = DefaultBootstrapTimeout
	}
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.MaxBody <= 0 {
		o.MaxBody = protocol.MaxBodyBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxArtifactsPerSession <= 0 {
		o.MaxArtifactsPerSession = DefaultMaxArtifactsPerSession
	}
	if o.MaxSessionBytes <= 0 {
		o.MaxSessionBytes = DefaultMaxSessionBytes
	}
	return o
}

// CheckAPIToken refuses a client token that no HTTP header can carry: one
// with a control character (a newline read along with it). The server
// would start and look healthy, and no client could authenticate; the Go
// client refuses such a token too (client.New). It refuses a token that
// is not ASCII too: the server compares the header's bytes with the
// token's UTF-8, which rein and curl send, but a browser sends a header
// in ISO-8859-1, "é" as the one byte 0xe9, and refuses to send a
// character past U+00FF at all, so the web view answered the right token
// "not accepted" (or "cannot reach rein-server"). And it refuses one
// longer than MaxAPITokenLen, which no request could carry to it. It does
// not say what the token is.
func CheckAPIToken(token string) error {
	if len(token) > MaxAPITokenLen {
		return fmt.Errorf("the token is %d bytes; at most %d are accepted: a longer Authorization header is refused (by this server past 64 KiB, by common proxies past 8 KiB), so no client could authenticate", len(token), MaxAPITokenLen)
	}
	for i := 0; i < len(token); i++ {
		if b := token[i]; b < 0x20 || b == 0x7f {
			return fmt.Errorf("the token contains a control character (byte %#02x at %d); no HTTP header can carry it, so no client could authenticate", b, i)
		} else if b >= 0x80 {
			return fmt.Errorf("the token contains a byte that is not ASCII (%#02x at %d); a browser sends such a character in another encoding, so the web view could never authenticate: use printable ASCII (head -c 32 /dev/urandom | base64)", b, i)
		}
	}
	return nil
}

// check refuses options that would run the server unsafely.
func (o *Options) check() error {
	if o.APIToken != "" {
		if err := CheckAPIToken(o.APIToken); err != nil {
			return fmt.Errorf("API token: %w", err)
		}
		if len(o.APIToken) < MinAPITokenLen {
			return fmt.Errorf("the API token is %d bytes; at least %d are required", len(o.APIToken), MinAPITokenLen)
		}
	}
	if len(o.TicketKey) > 0 && len(o.TicketKey) < MinTicketKeyLen {
		return fmt.Errorf("the stream ticket key is %d bytes; at least %d are required", len(o.TicketKey), MinTicketKeyLen)
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
