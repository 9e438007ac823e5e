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

// writeError writes the error body for err. Internal errors get a fixed
// message: their text may name files, SQL or Go types; they are logged
// here, once, with the full error. (A 503 comes from a failed commit or a
// stopping server, which the writer logs where it happens.)
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	body := protocol.ErrorBody{Code: protocol.CodeOf(err), Message: "internal error"}
	var pe *protocol.Error
	if body.Code != protocol.CodeInternal && errors.As(err, &pe) {
		body.Message = pe.Message
	}
	status := Status(body.Code)
	if status == http.StatusInternalServerError {
		log.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", status), slog.Any("err", err))
	}
	writeJSON(w, status, body)
}

// NotFound answers a request no route serves: the JSON 404 every unknown
// path gets, the web view's missing files included (web.Handler).
func NotFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, Status(protocol.CodeNotFound), protocol.ErrorBody{
		Code: protocol.CodeNotFound, Message: "no route " + r.Method + " " + r.URL.Path})
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
