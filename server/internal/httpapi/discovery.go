package httpapi

import (
	"net/http"
	"runtime/debug"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// DiscoveryPath is the public manifest clients read before anything else:
// what this server is, which routes it serves, how it authenticates, its
// limits and its optional features.
const DiscoveryPath = "/.well-known/rein.json"

// ProtocolVersion is the version of the wire contract (PROTOCOL.md, the
// protocol module) this server speaks. It changes only when a change
// would break a client or sandbox written against the previous one;
// additions (a new route, event or field) keep it.
const ProtocolVersion = 1

// AgentProtocols are the values agentd's --protocol accepts (agentd's
// options.go: ProtocolNative, ProtocolACP, ProtocolClaude, ProtocolCodex).
// The server cannot import agentd (another module), so the e2e suite
// checks this list against agentd's own help text.
var AgentProtocols = []string{"native", "acp", "claude", "codex"}

// DiscoveryOptions carry into the manifest what only the server knows:
// its lifecycle timeouts and per-session caps. A zero field is left out
// of the manifest rather than reported as a made-up default.
type DiscoveryOptions struct {
	// BootstrapTimeout is how long a session may wait for its first
	// sandbox before it is removed.
	BootstrapTimeout time.Duration
	// HeartbeatTimeout is how long a connected session may stay silent
	// before it becomes disconnected.
	HeartbeatTimeout time.Duration
	// MaxArtifactsPerSession and MaxSessionBytes are the per-session caps.
	MaxArtifactsPerSession int
	MaxSessionBytes        int64
	// Version is the binary's own version (what --version prints); empty:
	// the one the Go toolchain recorded.
	Version string
}

// Discovery is the body of GET /.well-known/rein.json.
type Discovery struct {
	Server   DiscoveryServer   `json:"server"`
	Protocol DiscoveryProtocol `json:"protocol"`
	Auth     DiscoveryAuth     `json:"auth"`
	// AgentProtocols are the agent kinds agentd can run (its --protocol).
	AgentProtocols []string `json:"agentProtocols"`
	Limits         Limits   `json:"limits"`
	// Features says which optional parts this server has, so a client
	// can hide what is not there instead of probing for 404s.
	Features map[string]bool `json:"features"`
	// Links are the documents and pages a client may follow; a link is
	// present only when this server serves it.
	Links  map[string]string `json:"links"`
	Routes []DiscoveryRoute  `json:"routes"`
}

// DiscoveryServer identifies the running binary.
type DiscoveryServer struct {
	Name string `json:"name"`
	// Version is the binary's version as its --version prints it (the
	// Makefile stamps `git describe`); for a binary built without one, the
	// main module's version as the Go toolchain recorded it: a release
	// tag, or "(devel)" for a build from a work tree.
	Version string `json:"version"`
	// Revision and Modified are the VCS commit the binary was built from
	// and whether the tree had changes, when the toolchain recorded them.
	Revision string `json:"revision,omitempty"`
	Modified bool   `json:"modified,omitempty"`
}

// DiscoveryProtocol names the wire contract.
type DiscoveryProtocol struct {
	Version int `json:"version"`
}

// DiscoveryAuth says how to authenticate.
type DiscoveryAuth struct {
	// Mode is "token" (client routes need "Authorization: Bearer <client
	// token>") or "none" (a loopback development server).
	Mode string `json:"mode"`
	// StreamTicketTTLMs is how long a stream ticket (for EventSource,
	// which cannot send headers) stays valid.
	StreamTicketTTLMs int64 `json:"streamTicketTtlMs"`
}

// Limits are the sizes and times a client or sandbox must stay within.
// The protocol's are constants; the server's come from its options.
type Limits struct {
	MaxBodyBytes         int64 `json:"maxBodyBytes"`
	MaxEventBytes        int   `json:"maxEventBytes"`
	MaxBatchEvents       int   `json:"maxBatchEvents"`
	MaxTextBytes         int   `json:"maxTextBytes"`
	MaxIDLength          int   `json:"maxIdLength"`
	MaxPlanEntries       int   `json:"maxPlanEntries"`
	MaxPermissionOptions int   `json:"maxPermissionOptions"`
	MaxIdempotencyKeyLen int   `json:"maxIdempotencyKeyLength"`
	PingIntervalMs       int64 `json:"pingIntervalMs"`
	WriteTimeoutMs       int64 `json:"writeTimeoutMs"`
	BodyTimeoutMs        int64 `json:"bodyTimeoutMs"`

	BootstrapTimeoutMs     int64 `json:"bootstrapTimeoutMs,omitempty"`
	HeartbeatTimeoutMs     int64 `json:"heartbeatTimeoutMs,omitempty"`
	MaxArtifactsPerSession int   `json:"maxArtifactsPerSession,omitempty"`
	MaxSessionBytes        int64 `json:"maxSessionBytes,omitempty"`
}

// DiscoveryRoute is one route: its method, its path with {id} for the
// session id, and who may call it ("none", "client", "sandbox" for the
// client token or the session's sandbox token, "ticket" for the client
// token or a stream ticket).
type DiscoveryRoute struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Auth   string `json:"auth"`
}

// knownRoutes are the routes the manifest may list. Each is listed only
// when the router really serves it (checked against the mux per request),
// so a route added by another file shows up once it is registered, and
// the web view's only when it is mounted. Optional features are keyed by
// the route that provides them.
var knownRoutes = []struct {
	DiscoveryRoute
	feature, link string
}{
	{DiscoveryRoute{"GET", DiscoveryPath, "none"}, "", "self"},
	{DiscoveryRoute{"GET", "/healthz", "none"}, "", "health"},
	{DiscoveryRoute{"GET", "/openapi.json", "none"}, "openapi", "openapi"},
	{DiscoveryRoute{"GET", "/", "none"}, "webView", "webView"},
	{DiscoveryRoute{"GET", "/metrics", "client"}, "metrics", "metrics"},
	{DiscoveryRoute{"GET", "/sessions", "client"}, "", ""},
	{DiscoveryRoute{"GET", "/sessions/stream", "ticket"}, "", ""},
	{DiscoveryRoute{"POST", "/sessions/stream-ticket", "client"}, "", ""},
	{DiscoveryRoute{"GET", "/sessions/{id}", "client"}, "", ""},
	{DiscoveryRoute{"POST", "/sessions/{id}", "client"}, "", ""},
	{DiscoveryRoute{"DELETE", "/sessions/{id}", "client"}, "", ""},
	{DiscoveryRoute{"POST", "/sessions/{id}/token", "client"}, "", ""},
	{DiscoveryRoute{"POST", "/sessions/{id}/commands", "client"}, "", ""},
	{DiscoveryRoute{"GET", "/sessions/{id}/commands", "sandbox"}, "", ""},
	{DiscoveryRoute{"POST", "/sessions/{id}/events", "sandbox"}, "", ""},
	{DiscoveryRoute{"GET", "/sessions/{id}/artifacts", "client"}, "", ""},
	{DiscoveryRoute{"GET", "/sessions/{id}/stream", "ticket"}, "", ""},
	{DiscoveryRoute{"POST", "/sessions/{id}/stream-ticket", "client"}, "", ""},
	{DiscoveryRoute{"GET", "/sessions/{id}/events", "client"}, "eventExport", ""},
	{DiscoveryRoute{"GET", "/sessions/{id}/turns", "client"}, "turnHistory", ""},
	{DiscoveryRoute{"GET", "/approvals", "client"}, "approvalsInbox", ""},
	{DiscoveryRoute{"GET", "/sessions/{id}/turns/{turnId}", "client"}, "", ""},
	{DiscoveryRoute{"GET", "/approvals/stream", "ticket"}, "", ""},
	{DiscoveryRoute{"GET", "/approvals/history", "client"}, "", ""},
}

// serves reports whether the router has a route registered for exactly
// this method and path (the catch-all and a wildcard that merely matches
// do not count).
func (a *API) serves(method, path string) bool {
	sample := path
	if i := len("/sessions/{id}"); len(path) >= i && path[:i] == "/sessions/{id}" {
		sample = "/sessions/x" + path[i:]
	}
	r, err := http.NewRequest(method, sample, nil)
	if err != nil {
		return false // a constant path of knownRoutes: never
	}
	_, pattern := a.mux.Handler(r)
	want := method + " " + path
	if path == "/" {
		want = method + " /{$}"
	}
	return pattern == want
}

// discovery serves GET /.well-known/rein.json. It is public like
// /healthz: it says how to authenticate, so it cannot require it, and it
// holds nothing secret.
func (a *API) discovery(w http.ResponseWriter, r *http.Request) {
	d := Discovery{
		Server:         buildVersion(a.opts.Discovery.Version),
		Protocol:       DiscoveryProtocol{Version: ProtocolVersion},
		Auth:           DiscoveryAuth{Mode: "none", StreamTicketTTLMs: TicketTTL.Milliseconds()},
		AgentProtocols: AgentProtocols,
		Limits: Limits{
			MaxBodyBytes: a.opts.MaxBody, MaxEventBytes: protocol.MaxEventBytes, MaxBatchEvents: protocol.MaxBatchEvents,
			MaxTextBytes: protocol.MaxTextLen, MaxIDLength: protocol.MaxIDLen, MaxPlanEntries: protocol.MaxPlanEntries,
			MaxPermissionOptions: protocol.MaxPermissionOptions, MaxIdempotencyKeyLen: protocol.MaxIdempotencyKeyLen,
			PingIntervalMs: a.opts.PingInterval.Milliseconds(), WriteTimeoutMs: a.opts.WriteTimeout.Milliseconds(),
			BodyTimeoutMs:          a.opts.BodyTimeout.Milliseconds(),
			BootstrapTimeoutMs:     a.opts.Discovery.BootstrapTimeout.Milliseconds(),
			HeartbeatTimeoutMs:     a.opts.Discovery.HeartbeatTimeout.Milliseconds(),
			MaxArtifactsPerSession: a.opts.Discovery.MaxArtifactsPerSession,
			MaxSessionBytes:        a.opts.Discovery.MaxSessionBytes,
		},
		Features: map[string]bool{
			// Always there in this server: sandbox tokens per session,
			// their rotation, and stream tickets for browsers.
			"sandboxTokens": true, "tokenRotation": true, "streamTickets": true,
			"cors": len(a.origins) > 0,
			// Command acknowledgement (ackedCommandId, Rein-Command-Cursor)
			// and prompts that wait for the sandbox (initial, queue:true).
			"commandAcks": true, "queuedPrompts": true,
			// Idempotency-Key on POST /sessions/{id}/commands: a retried
			// command is stored once. A client must not retry a command
			// on a server without it.
			"idempotentCommands": true,
		},
		Links: map[string]string{},
	}
	if a.clientHash != nil {
		d.Auth.Mode = "token"
	}
	for _, kr := range knownRoutes {
		ok := a.serves(kr.Method, kr.Path)
		if kr.feature != "" {
			d.Features[kr.feature] = ok
		}
		if !ok {
			continue
		}
		d.Routes = append(d.Routes, kr.DiscoveryRoute)
		if kr.link != "" {
			d.Links[kr.link] = kr.Path
		}
	}
	writeJSON(w, http.StatusOK, d)
}

// buildVersion is the running binary's identity: version, when set, is
// what its --version prints; the rest is what the Go toolchain recorded.
// Without the first, a `make build` binary said "(devel)" here while its
// --version gave the commit: the workspace build records no VCS data.
func buildVersion(version string) DiscoveryServer {
	s := DiscoveryServer{Name: "rein-server", Version: "(unknown)"}
	info, ok := debug.ReadBuildInfo()
	if ok && info.Main.Version != "" {
		s.Version = info.Main.Version
	}
	if version != "" {
		s.Version = version
	}
	if !ok {
		return s
	}
	for _, kv := range info.Settings {
		switch kv.Key {
		case "vcs.revision":
			s.Revision = kv.Value
		case "vcs.modified":
			s.Modified = kv.Value == "true"
		}
	}
	return s
}
