package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/rein-ai/rein/protocol"
)

// Status returns the HTTP status for a wire code: protocol's one table
// (protocol.HTTPStatus), shared with agentd and the Go client, which map
// statuses back to codes with the same table.
func Status(c protocol.Code) int { return protocol.HTTPStatus(c) }

// StatusClientClosed is the status recorded (in rein_http_requests_total
// and the access log) for a request whose client left before its answer:
// nginx's 499, "client closed request". No client ever receives it.
const StatusClientClosed = 499

// writeError writes the error body for err. Internal errors get a fixed
// message: their text may name files, SQL or Go types; they are logged
// here, once, with the full error. (A 503 comes from a failed commit or a
// stopping server, which the writer logs where it happens.)
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	if ctxErr := r.Context().Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		// The client went away before its answer (net/http ends the
		// request's context when its connection closes): nobody reads
		// this one and the server did nothing wrong. StatusClientClosed
		// keeps it out of the 5xx an operator alerts on, and out of the
		// error log. Whether its events were stored is what the client's
		// retry finds out (a duplicate is accepted again and counted).
		w.WriteHeader(StatusClientClosed)
		return
	}
	body := protocol.ErrorBody{Code: protocol.CodeOf(err), Message: "internal error"}
	var pe *protocol.Error
	if body.Code != protocol.CodeInternal && errors.As(err, &pe) {
		body.Message, body.Scope = pe.Message, pe.Scope
	}
	status := Status(body.Code)
	if status == http.StatusInternalServerError {
		log.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", status), slog.Any("err", err))
	}
	writeJSON(w, status, body)
}

// requestRefusal marks err, a refusal built by protocol, as one of the
// request itself (protocol.ScopeRequest): what it carries may be taken
// once the request is put right, and a sender must not drop it for this.
func requestRefusal(err error) error {
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		return err
	}
	marked := *pe
	marked.Scope = protocol.ScopeRequest
	return &marked
}

// NotFound answers a request no route serves: the JSON 404 every unknown
// path gets, the web view's missing files included (web.Handler).
func NotFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, Status(protocol.CodeNotFound), protocol.ErrorBody{
		Code: protocol.CodeNotFound, Message: "no route " + r.Method + " " + r.URL.Path})
}

// ShuttingDown answers a request that arrived after the server stopped
// serving (app's handler tracker): the JSON 503 unavailable every client
// retries, on a connection that then closes. It runs outside API.ServeHTTP,
// so it sets the headers that would have.
func ShuttingDown(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Connection", "close")
	writeJSON(w, Status(protocol.CodeUnavailable), protocol.ErrorBody{
		Code: protocol.CodeUnavailable, Message: "server is shutting down"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own wire types get here; they always marshal.
		http.Error(w, `{"code":"internal","message":"internal error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
