package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// Service is what the routes need from the domain service.
type Service interface {
	CreateSession(ctx context.Context, id string, project *string) (protocol.Session, error)
	GetSession(ctx context.Context, id string) (protocol.Session, error)
	ListSessions(ctx context.Context, project string) ([]protocol.Session, error)
	DeleteSession(ctx context.Context, id string) error
	AddCommand(ctx context.Context, id string, cmd protocol.Command) (int64, error)
	AppendEvents(ctx context.Context, id, instance string, events []protocol.Event) (protocol.EventsAccepted, error)
	// Artifacts returns the session's artifact JSON ordered by seq.
	Artifacts(ctx context.Context, id string) ([]json.RawMessage, error)
	// ArtifactStream prepares an artifact stream; resume says whether the
	// client sent Last-Event-ID (after).
	ArtifactStream(ctx context.Context, id string, after int64, resume bool) (*Stream, error)
	SessionStream(ctx context.Context, project string) (*Stream, error)
	CommandStream(ctx context.Context, id, instance string, after int64, resume bool) (*Stream, error)
	Health(ctx context.Context) error
}

// Options tune the adapter. Zero values select the defaults.
type Options struct {
	// MaxBody is the largest request body read (default protocol.MaxBodyBytes).
	MaxBody int64
	// WriteTimeout bounds every stream write (default 10s).
	WriteTimeout time.Duration
	// PingInterval is how often an idle stream gets ": ping" (default 15s).
	PingInterval time.Duration
	// BodyTimeout bounds reading a request body (default 30s). The server
	// has no global ReadTimeout because it would also cut streams short.
	BodyTimeout time.Duration
}

// API serves the routes.
type API struct {
	svc  Service
	log  *slog.Logger
	opts Options
	mux  *http.ServeMux
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
	a := &API{svc: svc, log: log, opts: opts, mux: http.NewServeMux()}
	m := a.mux
	m.HandleFunc("GET /healthz", a.health)
	m.HandleFunc("GET /sessions", a.listSessions)
	// A literal segment beats a wildcard, so this is never /sessions/{id}.
	m.HandleFunc("GET /sessions/stream", a.sessionStream)
	m.HandleFunc("GET /sessions/{id}", a.withID(a.getSession))
	m.HandleFunc("POST /sessions/{id}", a.withID(a.createSession))
	m.HandleFunc("DELETE /sessions/{id}", a.withID(a.deleteSession))
	m.HandleFunc("POST /sessions/{id}/commands", a.withID(a.postCommand))
	m.HandleFunc("GET /sessions/{id}/commands", a.withID(a.commandStream))
	m.HandleFunc("POST /sessions/{id}/events", a.withID(a.postEvents))
	m.HandleFunc("GET /sessions/{id}/artifacts", a.withID(a.artifacts))
	m.HandleFunc("GET /sessions/{id}/stream", a.withID(a.artifactStream))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, a.log, protocol.Errorf(protocol.CodeNotFound, "no route %s %s", r.Method, r.URL.Path))
	})
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func (a *API) withID(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := protocol.ValidateSessionID(id); err != nil {
			writeError(w, r, a.log, err)
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
		return nil, protocol.Errorf(protocol.CodeInvalid, "read request body: %v", err)
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
	list, err := a.svc.ListSessions(r.Context(), r.URL.Query().Get("project"))
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
	var req protocol.CreateSessionRequest
	if len(bytesTrim(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, r, a.log, protocol.Errorf(protocol.CodeInvalid, "body must be a JSON object like {\"project\":\"x\"}"))
			return
		}
	}
	if req.Project != nil {
		if err := protocol.ValidateProject(*req.Project); err != nil {
			writeError(w, r, a.log, err)
			return
		}
	}
	s, err := a.svc.CreateSession(r.Context(), id, req.Project)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	writeJSON(w, http.StatusCreated, s)
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
	n, err := a.svc.AddCommand(r.Context(), id, cmd)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	writeJSON(w, http.StatusAccepted, protocol.CommandAccepted{ID: n})
}

func (a *API) postEvents(w http.ResponseWriter, r *http.Request, id string) {
	body, err := a.readBody(w, r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	events, err := protocol.DecodeEvents(body)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	instance, err := instanceOf(r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	res, err := a.svc.AppendEvents(r.Context(), id, instance, events)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	writeJSON(w, http.StatusAccepted, res)
}

func (a *API) artifacts(w http.ResponseWriter, r *http.Request, id string) {
	list, err := a.svc.Artifacts(r.Context(), id)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	if list == nil {
		list = []json.RawMessage{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *API) artifactStream(w http.ResponseWriter, r *http.Request, id string) {
	after, resume := lastEventID(r)
	st, err := a.svc.ArtifactStream(r.Context(), id, after, resume)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	a.serveStream(w, r, st)
}

func (a *API) sessionStream(w http.ResponseWriter, r *http.Request) {
	st, err := a.svc.SessionStream(r.Context(), r.URL.Query().Get("project"))
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	a.serveStream(w, r, st)
}

func (a *API) commandStream(w http.ResponseWriter, r *http.Request, id string) {
	instance, err := instanceOf(r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	after, resume := lastEventID(r)
	st, err := a.svc.CommandStream(r.Context(), id, instance, after, resume)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	a.serveStream(w, r, st)
}

// instanceOf returns the Rein-Instance header ("" when absent). It is
// stored and compared, so it is held to the event id rules.
func instanceOf(r *http.Request) (string, error) {
	v := r.Header.Get(protocol.HeaderInstance)
	if v != "" && !protocol.ValidEventID(v) {
		return "", protocol.Errorf(protocol.CodeInvalid, "%s header: 1-%d characters of [A-Za-z0-9._:-]", protocol.HeaderInstance, protocol.MaxIDLen)
	}
	return v, nil
}
