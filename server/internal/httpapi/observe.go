package httpapi

import (
	"log/slog"
	"net/http"
	"time"
)

// Observer is told what the HTTP adapter does, for metrics (the server's
// is internal/metrics). Methods must be cheap and must not block.
type Observer interface {
	// Request: a request was answered; route is the mux pattern that
	// matched ("GET /sessions/{id}"), never the raw path, so the number of
	// series stays bounded whatever clients send.
	Request(route string, code int)
	// StreamOpened and StreamClosed bracket an SSE stream of a kind
	// ("artifacts", "sessions", "commands").
	StreamOpened(kind string)
	StreamClosed(kind string)
	// ClientDropped: the server cut a stream client that was too slow;
	// reason is "write_timeout" or "overflow".
	ClientDropped(kind, reason string)
}

// Route labels for requests no route pattern matched.
const (
	routePreflight = "OPTIONS (CORS preflight)"
	routeNone      = "(none)"
)

// observe serves r through next, then counts it and, with
// Options.AccessLog, logs it. The route is read after next ran: the mux
// sets r.Pattern on the request it was given.
func (a *API) observe(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request)) {
	if a.opts.Observer == nil && !a.opts.AccessLog {
		next(w, r)
		return
	}
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	next(rec, r)
	a.record(r, rec, start)
}

// record counts and logs a request observe served. It is observe's own
// function, not inline, so observe's frame stays small: a stream's
// handler goroutine idles below observe for hours, and every byte of its
// frames counts towards the stack size the goroutine keeps (offStack).
//
//go:noinline
func (a *API) record(r *http.Request, rec *statusRecorder, start time.Time) {
	code := rec.code
	if code == 0 {
		code = http.StatusOK // a handler that wrote nothing
	}
	route := r.Pattern
	if route == "" {
		route = routeNone
		if r.Method == http.MethodOptions {
			route = routePreflight
		}
	}
	if a.opts.Observer != nil {
		a.opts.Observer.Request(route, code)
	}
	if a.opts.AccessLog {
		// Never the URL (its query may hold a stream ticket) nor any
		// header (Authorization holds a token): the pattern says enough.
		attrs := []slog.Attr{
			slog.String("method", r.Method), slog.String("route", route), slog.Int("status", code),
			slog.Duration("duration", time.Since(start)), slog.Int64("bytes", rec.bytes),
		}
		if id := r.PathValue("id"); id != "" {
			attrs = append(attrs, slog.String("session", id))
		}
		a.log.LogAttrs(r.Context(), slog.LevelInfo, "access", attrs...)
	}
}

// statusRecorder notes a response's status and size. It passes Flush and the
// deadline setters on (through Unwrap), which the streams need.
type statusRecorder struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Flush implements http.Flusher for code that asserts it (go-sse).
func (r *statusRecorder) Flush() {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// streamKind names a stream route for the subscriber gauge. Every stream
// route has its case: the approvals stream, once missing, was counted as
// an artifact stream.
func streamKind(r *http.Request) string {
	switch r.Pattern {
	case "GET /sessions/stream":
		return "sessions"
	case "GET /sessions/{id}/commands":
		return "commands"
	case "GET /approvals/stream":
		return "approvals"
	}
	return "artifacts"
}
