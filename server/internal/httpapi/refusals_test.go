package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// A body that stops arriving (the body timeout, a connection cut in the
// middle) refuses the request, not the events it would have held: their
// sender keeps them and sends them again.
func TestUnreadBodyRefusesTheRequest(t *testing.T) {
	a := New(&fake{}, nil, Options{})
	cut := io.MultiReader(strings.NewReader(`[{"type":"notice","level":"info","message":"`), iotestErr{})
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest("POST", "/sessions/a/events", cut))
	var e protocol.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	if rec.Code != 400 || e.Code != protocol.CodeInvalid || e.Scope != protocol.ScopeRequest || !strings.Contains(e.Message, "read request body") {
		t.Errorf("%d %+v; want 400 invalid, scope request, naming the body", rec.Code, e)
	}
}

// iotestErr is a body that fails to read.
type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("connection reset by peer") }
