package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/openapi"
	"github.com/rein-ai/rein/server/store"
)

// Service is what the routes need from the domain service.
type Service interface {
	// CreateSession returns the record and the session's sandbox token,
	// which is shown this once.
	// req.Prompt, when set, becomes command 1, delivered when a sandbox
	// first connects.
	CreateSession(ctx context.Context, id string, req protocol.CreateSessionRequest) (protocol.Session, string, error)
	// RotateSandboxToken replaces the session's sandbox token, ends the
	// sandbox's command stream, and returns the new token.
	RotateSandboxToken(ctx context.Context, id string) (string, error)
	// SandboxSession returns the session whose sandbox token has this
	// SHA-256 hash; claimed is the session the request names (see
	// server.Server.SandboxSession).
	SandboxSession(ctx context.Context, hash [32]byte, claimed string) (id string, ok bool, err error)
	GetSession(ctx context.Context, id string) (protocol.Session, error)
	ListSessions(ctx context.Context, project string) ([]protocol.Session, error)
	DeleteSession(ctx context.Context, id string) error
	// AddCommand stores a command; key is its Idempotency-Key ("" for
	// none), and replayed reports that the key named a command already
	// stored (whose id it returns).
	AddCommand(ctx context.Context, id, key string, cmd protocol.Command) (n int64, replayed bool, err error)
	// AckCommands records the command cursor a sandbox sent with an
	// event post (protocol.HeaderCommandCursor).
	// created is the createdAt the sandbox named
	// (protocol.HeaderSessionCreated; 0 for none), here and below: a
	// request naming another than the session's is refused.
	AckCommands(ctx context.Context, id, instance string, created, cursor int64) error
	// AppendEvents stores events; raws, from protocol.DecodeEventsRaw,
	// holds the bytes each event came as where they can be stored as they
	// are (nil where not, or altogether).
	AppendEvents(ctx context.Context, id, instance string, created int64, events []protocol.Event, raws [][]byte) (protocol.EventsAccepted, error)
	// ArtifactsBySeq returns a page of the session's artifacts with seq >
	// after, ordered by seq (bounded in count and bytes, one artifact at
	// least), and whether more follow; GET /artifacts without parameters
	// reads the whole list with it, a page at a time.
	ArtifactsBySeq(ctx context.Context, id string, after int64) ([]store.Artifact, bool, error)
	// ArtifactsChanged returns at most limit of the artifacts changed
	// after revision after, in revision order (fewer when their bodies
	// are large, one at least), with the session's revision, and whether
	// more follow (GET /artifacts?after=&limit=).
	ArtifactsChanged(ctx context.Context, id string, after int64, limit int) (store.Snapshot, bool, error)
	// ArtifactStream prepares an artifact stream; resume says whether the
	// client sent Last-Event-ID (after).
	ArtifactStream(ctx context.Context, id string, after int64, resume bool) (*Stream, error)
	SessionStream(ctx context.Context, project string) (*Stream, error)
	// CommandStream opens a sandbox's command stream; the Stream's
	// SessionCreated is the createdAt of the session it opened on.
	CommandStream(ctx context.Context, id, instance string, created, after int64, resume bool) (*Stream, error)
	Health(ctx context.Context) error
	// The approvals inbox and turn history (approvals.go, turns.go).
	Approvals(ctx context.Context, project string) ([]protocol.Approval, error)
	ApprovalHistory(ctx context.Context, project string, limit int) ([]protocol.Decision, error)
	ApprovalStream(ctx context.Context, project string, after int64, resume bool) (*Stream, error)
	Turns(ctx context.Context, id string) ([]protocol.Turn, error)
	Turn(ctx context.Context, id, turnID string) (protocol.Turn, error)
	// EventLog returns a page of the log and the createdAt of the
	// session it is of (see server.Server.EventLog).
	EventLog(ctx context.Context, id string, after int64, limit int) ([]protocol.LoggedEvent, bool, int64, error)
}

// Options tune the adapter. Zero values select the defaults.
type Options struct {
	// MaxBody is the largest request body read (default protocol.MaxBodyBytes).
	MaxBody int64
	// WriteTimeout bounds every stream write of at most 64 KiB, a piece
	// of a larger message (default 10s).
	WriteTimeout time.Duration
	// PingInterval is how often an idle stream gets ": ping" (default 15s).
	PingInterval time.Duration
	// BodyTimeout bounds reading a request body (default 30s). The server
	// has no global ReadTimeout because it would also cut streams short.
	BodyTimeout time.Duration
	// APIToken is the client token; "" turns authentication off (see
	// auth.go for who may call what).
	APIToken string
	// CORSOrigins are the origins allowed cross-origin, as CheckOrigin
	// returns them.
	CORSOrigins []string
	// Now is the clock stream tickets expire by (default time.Now).
	Now func() time.Time
	// UI, when set, serves the web view: GET / and GET /ui/... go to it
	// without authentication (the files hold no data; the page asks for
	// the client token and calls the API with it).
	UI http.Handler
	// Discovery is what GET /.well-known/rein.json reports that only the server knows.
	Discovery DiscoveryOptions
	// Observer, when set, is told about every request and stream (see
	// observe.go).
	Observer Observer
	// AccessLog logs one line per request: method, route pattern, status,
	// duration, bytes (never a header or the query).
	AccessLog bool
	// Metrics, when set, serves GET /metrics to clients holding the client
	// token (anyone when authentication is off).
	Metrics http.Handler
	// LocalHostsOnly serves the routes that need a credential only to
	// requests whose Host names this machine (an IP address, localhost,
	// a name under .localhost), and answers any other 403 (the public
	// routes hold no data): set when authentication is off (on a loopback
	// address, as New requires without --insecure-no-auth), where nothing
	// else stops a page that reaches the port by DNS rebinding (see
	// localHost).
	LocalHostsOnly bool
	// TicketKey signs stream tickets; servers that share it honour each
	// other's tickets. Empty: a random key per process. At least
	// MinTicketKeyLen bytes (New panics otherwise: the caller validates).
	TicketKey []byte
}

// API serves the routes.
type API struct {
	svc  Service
	log  *slog.Logger
	opts Options
	mux  *http.ServeMux
	// clientHash is the SHA-256 of the client token; nil when
	// authentication is off.
	clientHash []byte
	origins    map[string]bool
	// crossOrigin refuses writes a browser sends for a page on another
	// site (see crossSite in auth.go).
	crossOrigin *http.CrossOriginProtection
	tickets     *tickets
	// routes are the patterns registered, for Routes.
	routes []string
}

// New returns the handler for every route.
func New(svc Service, log *slog.Logger, opts Options) *API {
	if opts.MaxBody <= 0 {
		opts.MaxBody = protocol.MaxBodyBytes
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 15 * time.Second
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = 30 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &API{svc: svc, log: log, opts: opts, mux: http.NewServeMux(), origins: map[string]bool{}, tickets: newTickets(opts.Now, opts.TicketKey)}
	if opts.APIToken != "" {
		h := sha256.Sum256([]byte(opts.APIToken))
		a.clientHash = h[:]
	}
	a.crossOrigin = http.NewCrossOriginProtection()
	for _, o := range opts.CORSOrigins {
		a.origins[o] = true
		if err := a.crossOrigin.AddTrustedOrigin(o); err != nil {
			panic("httpapi: CORS origin not checked with CheckOrigin: " + err.Error())
		}
	}
	// Authentication runs before the session id is validated, so a caller
	// without a token learns nothing, not even which ids are well formed.
	handle := func(pattern string, acc access, h http.HandlerFunc) {
		a.routes = append(a.routes, pattern)
		a.mux.HandleFunc(pattern, a.guard(acc, h))
	}
	handle("GET /healthz", public, a.health)
	handle("GET "+DiscoveryPath, public, a.discovery)
	handle("GET /openapi.json", public, openapi.Serve)
	handle("GET /sessions", client, a.listSessions)
	// A literal segment beats a wildcard, so these are never /sessions/{id}
	// (which is why CreateSession refuses the id "stream-ticket").
	handle("GET /sessions/stream", sessionStream, a.sessionStream)
	handle("POST /sessions/stream-ticket", client, a.sessionsTicket)
	handle("GET /sessions/{id}", client, a.withID(a.getSession))
	handle("POST /sessions/{id}", client, a.withID(a.createSession))
	handle("DELETE /sessions/{id}", client, a.withID(a.deleteSession))
	handle("POST /sessions/{id}/token", client, a.withID(a.rotateToken))
	handle("POST /sessions/{id}/commands", client, a.withID(a.postCommand))
	handle("GET /sessions/{id}/commands", sandbox, a.withID(a.commandStream))
	handle("POST /sessions/{id}/events", sandbox, a.withID(a.postEvents))
	handle("GET /sessions/{id}/artifacts", client, a.withID(a.artifacts))
	handle("GET /sessions/{id}/stream", artifactStream, a.withID(a.artifactStream))
	handle("POST /sessions/{id}/stream-ticket", client, a.withID(a.artifactsTicket))
	handle("GET /sessions/{id}/events", client, a.withID(a.eventLog))
	handle("GET /sessions/{id}/turns", client, a.withID(a.listTurns))
	handle("GET /sessions/{id}/turns/{turnId}", client, a.withID(a.getTurn))
	handle("GET /approvals", client, a.listApprovals)
	handle("GET /approvals/stream", sessionStream, a.approvalStream)
	handle("GET /approvals/history", client, a.approvalHistory)
	if opts.Metrics != nil {
		handle("GET /metrics", client, opts.Metrics.ServeHTTP)
	}
	if opts.UI != nil {
		// "/{$}" is "/" only; every other unknown path stays a JSON 404
		// (after authentication) from the catch-all below.
		handle("GET /{$}", public, opts.UI.ServeHTTP)
		handle("GET /ui/", public, opts.UI.ServeHTTP)
	}
	handle("/", client, NotFound)
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Every answer is exactly the type it says: no browser sniffing one
	// into HTML or script.
	w.Header().Set("X-Content-Type-Options", "nosniff")
	a.observe(w, r, func(w http.ResponseWriter, r *http.Request) {
		if a.cors(w, r) {
			return
		}
		a.mux.ServeHTTP(w, r)
	})
}

func (a *API) withID(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := protocol.ValidateSessionID(id); err != nil {
			// The path, not the body: agentd must not drop its events
			// for an id it was started with.
			writeError(w, r, a.log, requestRefusal(err))
			return
		}
		h(w, r, id)
	}
}

// readBody reads a request body within MaxBody and the body timeout.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(a.opts.BodyTimeout))
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.opts.MaxBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, protocol.Errorf(protocol.CodeTooLarge, "request body is larger than %d bytes", a.opts.MaxBody)
	}
	if err != nil {
		// The body did not arrive (the body timeout, a connection cut
		// mid-body): nothing is known of what it holds, so it is the
		// request that is refused, not its content.
		return nil, protocol.RequestErrorf(protocol.CodeInvalid, "read request body: %v", err)
	}
	return b, nil
}

func (a *API) health(w http.ResponseWriter, r *http.Request) {
	if err := a.svc.Health(r.Context()); err != nil {
		writeError(w, r, a.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *API) listSessions(w http.ResponseWriter, r *http.Request) {
	list, err := a.svc.ListSessions(r.Context(), sessionsProject(r))
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	if list == nil {
		list = []protocol.Session{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *API) getSession(w http.ResponseWriter, r *http.Request, id string) {
	s, err := a.svc.GetSession(r.Context(), id)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (a *API) createSession(w http.ResponseWriter, r *http.Request, id string) {
	body, err := a.readBody(w, r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	req, err := decodeCreate(body)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	s, token, err := a.svc.CreateSession(r.Context(), id, req)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	noStore(w)
	writeJSON(w, http.StatusCreated, CreatedSession{Session: s, SandboxToken: token})
}

// CreatedSession is the 201 body of POST /sessions/:id (protocol's).
type CreatedSession = protocol.CreatedSession

// SandboxToken is the body of POST /sessions/:id/token (protocol's).
type SandboxToken = protocol.SandboxToken

// decodeCreate validates the optional body of POST /sessions/:id: its
// project and initial prompt. Like the event decoders it reads only the
// exact keys (encoding/json would also take "Project") and ignores others.
func decodeCreate(body []byte) (protocol.CreateSessionRequest, error) {
	var req protocol.CreateSessionRequest
	if len(bytesTrim(body)) == 0 {
		return req, nil
	}
	if !utf8.Valid(body) {
		return req, protocol.Errorf(protocol.CodeInvalid, "body is not valid UTF-8")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return req, protocol.Errorf(protocol.CodeInvalid, "body must be a JSON object like {\"project\":\"x\",\"prompt\":\"...\"}: %s", notObject(err))
	}
	if v, ok := m["project"]; ok && string(v) != "null" {
		var p string
		if v[0] != '"' || json.Unmarshal(v, &p) != nil {
			return req, protocol.Errorf(protocol.CodeInvalid, "project: must be a string")
		}
		if err := protocol.ValidateProject(p); err != nil {
			return req, err
		}
		req.Project = &p
	}
	if v, ok := m["prompt"]; ok && string(v) != "null" {
		var p string
		if v[0] != '"' || json.Unmarshal(v, &p) != nil {
			return req, protocol.Errorf(protocol.CodeInvalid, "prompt: must be a string")
		}
		if strings.TrimSpace(p) == "" {
			return req, protocol.Errorf(protocol.CodeInvalid, "prompt: must not be empty (leave it out for no initial prompt)")
		}
		req.Prompt = &p
	}
	return req, nil
}

// notObject says why a body did not decode as a JSON object (err from
// json.Unmarshal into a map, nil for null), as protocol says it of a
// command's: where the JSON breaks, or what it holds instead, never a Go
// type's name.
func notObject(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return "found null"
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		return "found " + te.Value
	}
	return "invalid JSON: " + err.Error()
}

// noStore keeps answers that carry a secret out of every cache.
func noStore(w http.ResponseWriter) { w.Header().Set("Cache-Control", "no-store") }

func (a *API) rotateToken(w http.ResponseWriter, r *http.Request, id string) {
	token, err := a.svc.RotateSandboxToken(r.Context(), id)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	noStore(w)
	writeJSON(w, http.StatusOK, SandboxToken{SandboxToken: token})
}

// artifactsTicket issues a ticket for GET /sessions/:id/stream. The session
// must exist, so a typo fails here and not as a 404 behind EventSource,
// which hides statuses.
func (a *API) artifactsTicket(w http.ResponseWriter, r *http.Request, id string) {
	sess, err := a.svc.GetSession(r.Context(), id)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	noStore(w)
	writeJSON(w, http.StatusOK, a.tickets.issue(ticketScope{kind: ticketArtifacts, session: id}, sess.CreatedAt))
}

// sessionsTicket issues a ticket for GET /sessions/stream.
func (a *API) sessionsTicket(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	writeJSON(w, http.StatusOK, a.tickets.issue(ticketScope{kind: ticketSessions}, 0))
}

func bytesTrim(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return b
}

func (a *API) deleteSession(w http.ResponseWriter, r *http.Request, id string) {
	if err := a.svc.DeleteSession(r.Context(), id); err != nil {
		writeError(w, r, a.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) postCommand(w http.ResponseWriter, r *http.Request, id string) {
	body, err := a.readBody(w, r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	cmd, err := protocol.DecodeCommand(body)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	keys := r.Header.Values(protocol.HeaderIdempotencyKey)
	if len(keys) > 1 {
		// Which one the client resends is not known: storing the
		// command under the first would let a retry with the other
		// store it again.
		writeError(w, r, a.log, protocol.Errorf(protocol.CodeInvalid, "%s header: given %d times; send one key", protocol.HeaderIdempotencyKey, len(keys)))
		return
	}
	key := r.Header.Get(protocol.HeaderIdempotencyKey)
	if len(keys) == 1 && key == "" {
		// Present but empty is a mistake, not "no key"; the domain
		// checks every other key.
		writeError(w, r, a.log, protocol.ValidateIdempotencyKey(key))
		return
	}
	n, replayed, err := a.svc.AddCommand(r.Context(), id, key, cmd)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	if replayed {
		w.Header().Set(protocol.HeaderIdempotentReplayed, "true")
	}
	writeJSON(w, http.StatusAccepted, protocol.CommandAccepted{ID: n})
}

func (a *API) postEvents(w http.ResponseWriter, r *http.Request, id string) {
	// The headers before the body: a refusal of the request itself
	// (protocol.ScopeRequest) must be what the answer says whatever the
	// events hold, or agentd would take it for its events' and drop them.
	instance, err := instanceOf(r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	cursor, ack, err := commandCursorOf(r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	created, err := sessionCreatedOf(r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	body, err := a.readBody(w, r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	events, raws, err := protocol.DecodeEventsRaw(body)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	res, err := a.svc.AppendEvents(r.Context(), id, instance, created, events, raws)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	if ack {
		// The header again: the session may have been deleted and
		// created again since the events were stored.
		if err := a.svc.AckCommands(r.Context(), id, instance, created, cursor); err != nil {
			writeError(w, r, a.log, err)
			return
		}
	}
	writeJSON(w, http.StatusAccepted, res)
}

// Pages of GET /sessions/:id/artifacts?after=&limit=.
const (
	defaultArtifactsLimit = 500
	maxArtifactsLimit     = 5000
)

// artifacts answers GET /sessions/:id/artifacts. Without parameters it is
// the whole list in seq order, as it always was, but read and written a
// page at a time, so the server never holds a long session's artifacts at
// once. With after or limit it is one page of the artifacts changed after
// revision after, in revision order, with a cursor for the next.
func (a *API) artifacts(w http.ResponseWriter, r *http.Request, id string) {
	// Given is given even when it does not decode: pageParams refuses it.
	_, afterGiven, _ := queryParam(r, "after")
	_, limitGiven, _ := queryParam(r, "limit")
	if !afterGiven && !limitGiven {
		a.allArtifacts(w, r, id)
		return
	}
	after, limit, err := pageParams(r, defaultArtifactsLimit, maxArtifactsLimit)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	page, more, err := a.svc.ArtifactsChanged(r.Context(), id, after, int(limit))
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// Which session the page is of, read with it: a client resuming from
	// next after the session was deleted and created again under its id
	// would lay the new one's artifacts over the old one's (as on the
	// artifact stream, which sends the same header).
	w.Header().Set(protocol.HeaderSessionCreated, strconv.FormatInt(page.Created, 10))
	w.WriteHeader(http.StatusOK)
	var b bytes.Buffer
	b.WriteString(`{"artifacts":[`)
	for i, art := range page.Artifacts {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := writeArtifactJSON(w, &b, art.Body); err != nil {
			return // the client went away
		}
	}
	b.WriteString(`],"rev":`)
	b.WriteString(strconv.FormatInt(page.Rev, 10))
	b.WriteString(`,"next":`)
	if more {
		b.WriteString(strconv.FormatInt(page.Artifacts[len(page.Artifacts)-1].Rev, 10))
	} else {
		b.WriteString("null")
	}
	b.WriteString("}\n")
	_, _ = w.Write(b.Bytes())
}

// writeArtifactJSON adds a stored artifact body to a JSON answer built in
// b, as encoding/json would write it (json.HTMLEscape: the protocol's
// encoder already escapes what it escapes, but a body stored by another
// writer may not). A big body (a long tool output) goes to w as it is,
// after what b holds: copied into b it made every GET of a 64 MB output
// hold another 64 to 128 MB while the client read it (shared.go in
// package server lets the replays share the body itself).
func writeArtifactJSON(w io.Writer, b *bytes.Buffer, body []byte) error {
	if len(body) < writePiece {
		json.HTMLEscape(b, body)
		return nil
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return err
	}
	b.Reset()
	if !protocol.HTMLSafe(body) {
		var e bytes.Buffer
		json.HTMLEscape(&e, body)
		body = e.Bytes()
	}
	_, err := w.Write(body)
	return err
}

// allArtifacts streams the whole list as a JSON array, the same bytes as
// encoding/json would give for it. The first page is read before the
// status is sent, so an unknown session is still a 404; a read that fails
// later aborts the response, so the client sees a broken body, never a
// short list that looks complete.
//
// Each page is its own read, so a session deleted and created again under
// its id between two pages would give a list that starts with the deleted
// session's artifacts and ends with the new one's: complete-looking, and
// true of neither. The session's createdAt, read before the first page,
// is read again after the last; another one (or none) aborts the
// response as a failed read does.
func (a *API) allArtifacts(w http.ResponseWriter, r *http.Request, id string) {
	sess, err := a.svc.GetSession(r.Context(), id)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	page, more, err := a.svc.ArtifactsBySeq(r.Context(), id, 0)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	paged := more
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	var b bytes.Buffer
	b.WriteByte('[')
	first := true
	for {
		for _, art := range page {
			if !first {
				b.WriteByte(',')
			}
			first = false
			if err := writeArtifactJSON(w, &b, art.Body); err != nil {
				return // the client went away
			}
		}
		if !more {
			break
		}
		if _, err := w.Write(b.Bytes()); err != nil {
			return // the client went away
		}
		b.Reset()
		last := page[len(page)-1].Seq
		if page, more, err = a.svc.ArtifactsBySeq(r.Context(), id, last); err != nil {
			a.log.Warn("artifact list cut short", "session", id, "after", last, "err", err)
			panic(http.ErrAbortHandler)
		}
	}
	if paged {
		again, err := a.svc.GetSession(r.Context(), id)
		if err == nil && again.CreatedAt != sess.CreatedAt {
			err = fmt.Errorf("session was deleted and created again while its artifacts were read (createdAt %d, now %d)", sess.CreatedAt, again.CreatedAt)
		}
		if err != nil {
			a.log.Warn("artifact list cut short", "session", id, "err", err)
			panic(http.ErrAbortHandler)
		}
	}
	b.WriteString("]\n")
	_, _ = w.Write(b.Bytes())
}

func (a *API) artifactStream(w http.ResponseWriter, r *http.Request, id string) {
	after, resume := lastEventID(r)
	ticketCreated := a.tickets.sessionCreated(r.URL.Query().Get("ticket"), id)
	a.serveStream(w, r, func() (*Stream, error) {
		st, err := a.svc.ArtifactStream(r.Context(), id, after, resume)
		if err != nil {
			return nil, err
		}
		if ticketCreated != 0 && ticketCreated != st.SessionCreated {
			// A browser's EventSource reconnects by itself with the URL
			// it opened and Last-Event-ID, and the page cannot read the
			// header below on that reconnection: the ticket says which
			// session it followed. That one was deleted, and resuming
			// from its revision would lay the new session's changes over
			// its artifacts; refused, the page gets a new ticket, and
			// with it a full replay.
			st.Sub.Close()
			return nil, protocol.Errorf(protocol.CodeNotFound, "session %q of this stream ticket (created at %d) was deleted; the one now under its id was created at %d: get a new ticket", id, ticketCreated, st.SessionCreated)
		}
		// Which session this is (protocol.HeaderSessionCreated): its
		// revisions are all a Last-Event-ID says, so a client resuming
		// after the session was deleted and created again under its id
		// tells the new one from the one it followed by this. It is the
		// createdAt read with the replay's first page, not apart from
		// it: a delete and create in between would name one session
		// over another's artifacts.
		w.Header().Set(protocol.HeaderSessionCreated, strconv.FormatInt(st.SessionCreated, 10))
		return st, nil
	})
}

func (a *API) sessionStream(w http.ResponseWriter, r *http.Request) {
	project := sessionsProject(r)
	a.serveStream(w, r, func() (*Stream, error) { return a.svc.SessionStream(r.Context(), project) })
}

// sessionsProject is the ?project= filter of GET /sessions and its stream
// ("" for all). There a value that is no project name matches nothing,
// and so does one that does not decode or is given twice (queryParam):
// it is then passed on as a name no session has (one with '%').
func sessionsProject(r *http.Request) string {
	p, _, err := queryParam(r, "project")
	if err != nil {
		return "%"
	}
	return p
}

func (a *API) commandStream(w http.ResponseWriter, r *http.Request, id string) {
	instance, err := instanceOf(r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	created, err := sessionCreatedOf(r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	after, resume := lastEventID(r)
	a.serveStream(w, r, func() (*Stream, error) {
		st, err := a.svc.CommandStream(r.Context(), id, instance, created, after, resume)
		if err != nil {
			return nil, err
		}
		// Which session this is, as the writer opened the stream on it:
		// read apart from the opening, a delete and create in between
		// would send one session's createdAt with another's commands.
		w.Header().Set(protocol.HeaderSessionCreated, strconv.FormatInt(st.SessionCreated, 10))
		return st, nil
	})
}

// instanceOf returns the Rein-Instance header ("" when absent). It is
// stored and compared, so it is held to the event id rules; a refusal is
// of the request (protocol.ScopeRequest), never of the events it carries.
func instanceOf(r *http.Request) (string, error) {
	v := r.Header.Get(protocol.HeaderInstance)
	if v != "" && !protocol.ValidEventID(v) {
		return "", protocol.RequestErrorf(protocol.CodeInvalid, "%s header: 1-%d characters of [A-Za-z0-9._:-]", protocol.HeaderInstance, protocol.MaxIDLen)
	}
	return v, nil
}
