package agentd

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rein-ai/rein/agentd/internal/outbox"
	"github.com/rein-ai/rein/protocol"
)

// Protocols agentd can speak with the agent.
const (
	ProtocolNative = "native"
	ProtocolACP    = "acp"
	ProtocolCodex  = "codex"
	ProtocolClaude = "claude"
)

// Defaults for zero Options fields.
const (
	DefaultAbortGrace        = 5 * time.Second
	DefaultShutdownGrace     = 5 * time.Second
	DefaultKillStep          = time.Second
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultBatchMax          = 200
	DefaultBatchWait         = 0
	DefaultQueueSize         = 1000
	DefaultStreamIdleTimeout = 45 * time.Second
	DefaultFlushTimeout      = 10 * time.Second
	DefaultOutboxMaxBytes    = outbox.DefaultMaxBytes
	DefaultRestartDelay      = 500 * time.Millisecond
	DefaultRestartDelayMax   = 10 * time.Second
	// DefaultHealthyRun is how long an agent must have run for its crash
	// to restart it after the shortest delay again.
	DefaultHealthyRun = 30 * time.Second
)

// Options configures Run. Server, Session and Command are required; every
// other zero value means the documented default.
type Options struct {
	// Server is the Rein server's base URL (http or https, no credentials).
	Server string
	// Session is the session id.
	Session string
	// Token, when set, is sent as Authorization: Bearer on every request.
	// It is never logged and never passed to the agent.
	Token string
	// Protocol is ProtocolNative (default), ProtocolACP, ProtocolCodex or
	// ProtocolClaude.
	Protocol string
	// Command is the agent's argv.
	Command []string
	// Dir is the agent's working directory; "" means agentd's.
	Dir string
	// Env is the agent's base environment; nil means agentd's own. Either
	// way Rein's credentials (REIN_TOKEN, REIN_TOKEN_FILE, REIN_API_TOKEN,
	// REIN_API_TOKEN_FILE, REIN_STREAM_TICKET_KEY_FILE) are left out and
	// REIN_SESSION_ID is set.
	Env []string

	// AbortGrace is how long the agent has to end its turn after an abort
	// before agentd interrupts, terminates and kills its process group.
	AbortGrace time.Duration
	// ShutdownGrace is how long the agent has to exit after the shutdown
	// command before agentd signals its process group.
	ShutdownGrace time.Duration
	// KillStep is the wait between SIGINT, SIGTERM and SIGKILL.
	KillStep time.Duration
	// RestartDelay and RestartDelayMax bound the crash restart backoff.
	RestartDelay    time.Duration
	RestartDelayMax time.Duration
	HealthyRun      time.Duration

	HeartbeatInterval time.Duration
	BatchMax          int
	BatchWait         time.Duration
	QueueSize         int
	StreamIdleTimeout time.Duration
	// StateDir, when set, holds one directory per session (StateDir/<session>)
	// with the outbox (every event read from the agent, kept until the
	// server acknowledges it), the instance id, the command cursor, the
	// open turn and the agent's conversation id (resumed by the next
	// agent); see README.md. "" (or a directory that cannot be used,
	// with a warning) means events wait in memory only, as QueueSize.
	StateDir string
	// OutboxMaxBytes bounds the outbox on disk (default
	// DefaultOutboxMaxBytes); when it is full the agent's stdout is not
	// read until the server acknowledges events.
	OutboxMaxBytes int64
	// FlushTimeout bounds posting the queued events at shutdown.
	FlushTimeout time.Duration
	// AgentStartWait is how long a native agent has to print its own
	// agent_started before agentd reports one for it (default 2 s).
	AgentStartWait time.Duration
	// Transcript, when set, receives every message the agent printed (and,
	// for the codex and acp protocols, every message agentd sent it) and
	// every command it was given, in the order the adapter handled them
	// (JSON lines): a record to debug a session or to replay through the
	// adapter in tests. The native protocol records nothing.
	Transcript io.Writer
	// ACPMode, with ProtocolACP, is the session mode agentd selects with
	// session/set_mode after session/new (e.g. codex-acp's "auto"); ""
	// leaves the agent's default. A mode the agent does not offer stops
	// the agent with an error naming the modes it offers.
	ACPMode string

	// Killer, when set, lets the caller kill the agent at once and exit
	// without waiting for Run (see Killer); nil means none.
	Killer *Killer

	// HTTPClient is used for every request; nil means one with no
	// client-wide Timeout (it would cut the command stream).
	HTTPClient *http.Client
	Logger     *slog.Logger
	// MetricsAddr, when set ("127.0.0.1:9481"), serves Prometheus metrics
	// at http://MetricsAddr/metrics while Run runs, without
	// authentication (they hold counts only); see README.md.
	MetricsAddr string
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.AbortGrace, DefaultAbortGrace)
	def(&o.ShutdownGrace, DefaultShutdownGrace)
	def(&o.KillStep, DefaultKillStep)
	def(&o.RestartDelay, DefaultRestartDelay)
	def(&o.RestartDelayMax, DefaultRestartDelayMax)
	def(&o.HealthyRun, DefaultHealthyRun)
	def(&o.HeartbeatInterval, DefaultHeartbeatInterval)
	def(&o.BatchWait, DefaultBatchWait)
	def(&o.StreamIdleTimeout, DefaultStreamIdleTimeout)
	def(&o.FlushTimeout, DefaultFlushTimeout)
	if o.BatchMax <= 0 {
		o.BatchMax = DefaultBatchMax
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.Protocol == "" {
		o.Protocol = ProtocolNative
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Server = strings.TrimRight(o.Server, "/")
}

// maxTokenLen is the longest Options.Token: rein-server's longest client
// token (app.MaxAPITokenLen).
const maxTokenLen = 4096

// ErrUsage marks an error in Options (exit code 2 in cmd/agentd).
var ErrUsage = errors.New("usage")

// Validate reports the first thing wrong with o, wrapping ErrUsage.
func (o *Options) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrUsage}, args...)...)
	}
	if o.Server == "" {
		return bad("missing server URL (--server or REIN_SERVER)")
	}
	u, err := url.Parse(o.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("server URL %q must be http(s)://host[:port]", redactURL(o.Server))
	}
	if u.User != nil {
		return bad("server URL must not carry credentials; use --token or --token-file")
	}
	if len(o.Token) > maxTokenLen {
		// Not a token: a sandbox token is 43 characters, and rein-server
		// takes no client token longer than this. Sent, it got 431 from
		// the server (its headers are capped at 64 KiB), or a proxy's
		// refusal, which agentd retried forever as another's failure.
		return bad("the token is %d bytes, at most %d are sent (a sandbox token is 43): is --token-file the token's file?", len(o.Token), maxTokenLen)
	}
	for i := 0; i < len(o.Token); i++ {
		// No HTTP header carries a control character: Go's client
		// refuses every request before sending it, an error agentd
		// took for a network failure and retried forever, never
		// saying that the token was the cause. A token from a
		// Kubernetes secret or an env file often ends in a newline.
		// The message never shows the token.
		if b := o.Token[i]; b < 0x20 || b == 0x7f {
			return bad("the token contains a control character (byte %#02x at %d); no HTTP header can carry it (--token, REIN_TOKEN or --token-file)", b, i)
		}
	}
	if o.Session == "" {
		return bad("missing session id (--session or REIN_SESSION_ID)")
	}
	if err := protocol.ValidateSessionID(o.Session); err != nil {
		return bad("%v", err)
	}
	if len(o.Command) == 0 || o.Command[0] == "" {
		return bad("missing agent command: agentd [flags] -- CMD [ARGS...]")
	}
	if o.ACPMode != "" && o.Protocol != ProtocolACP {
		return bad("--acp-mode is for --protocol acp, not %s", o.Protocol)
	}
	if _, ok := adapters[o.Protocol]; !ok {
		return bad("unknown protocol %q (want one of %s)", o.Protocol, strings.Join(protocolNames(), ", "))
	}
	if o.OutboxMaxBytes != 0 && o.OutboxMaxBytes < outbox.MinMaxBytes {
		return bad("outbox-max-bytes %d is below the minimum of %d", o.OutboxMaxBytes, outbox.MinMaxBytes)
	}
	if o.BatchMax > protocol.MaxBatchEvents {
		return bad("batch-max %d is above the server's limit of %d events", o.BatchMax, protocol.MaxBatchEvents)
	}
	return nil
}

// redactURL drops userinfo so an error message cannot leak a password.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
