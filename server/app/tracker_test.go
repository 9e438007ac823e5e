package app

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// A request that reaches the handler after Close stopped serving gets the
// documented error shape: a JSON 503 unavailable, sent as JSON, like every
// other error (a client reads the code to decide to retry).
func TestTrackerRefusesAfterCloseWithJSON(t *testing.T) {
	var tr tracker
	h := tr.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("handler ran after closeAndWait")
	}))
	tr.closeAndWait()

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/sessions", nil))

	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", rec.Code)
	}
	for k, want := range map[string]string{
		"Content-Type":           "application/json",
		"X-Content-Type-Options": "nosniff",
		"Connection":             "close",
	} {
		if got := rec.Header().Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	var body protocol.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	if body.Code != protocol.CodeUnavailable || body.Message == "" {
		t.Errorf("body = %+v, want code unavailable with a message", body)
	}
}
