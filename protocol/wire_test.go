package protocol_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// TestWireTable: each code's status, its disposition, and what a client
// reading the answer back gets, with the server's body and without one.
func TestWireTable(t *testing.T) {
	tests := []struct {
		code   protocol.Code
		status int
		disp   protocol.Disposition
		// bare is the code read back from the status alone (a proxy page).
		bare protocol.Code
	}{
		{protocol.CodeInvalid, 400, protocol.Reject, protocol.CodeInvalid},
		{protocol.CodeUnauthorized, 401, protocol.Stop, protocol.CodeUnauthorized},
		{protocol.CodeForbidden, 403, protocol.Stop, protocol.CodeForbidden},
		{protocol.CodeNotFound, 404, protocol.Stop, protocol.CodeNotFound},
		{protocol.CodeConflict, 409, protocol.Reject, protocol.CodeConflict},
		{protocol.CodeNoSandbox, 409, protocol.Retry, protocol.CodeConflict},
		{protocol.CodeSuperseded, 409, protocol.Stop, protocol.CodeConflict},
		{protocol.CodeTooLarge, 413, protocol.Reject, protocol.CodeTooLarge},
		{protocol.CodeUnavailable, 503, protocol.Retry, protocol.CodeUnavailable},
		{protocol.CodeInternal, 500, protocol.Retry, protocol.CodeInternal},
	}
	if len(tests) != len(protocol.Codes) {
		t.Fatalf("table has %d codes, protocol.Codes %d: a code was added without its row", len(tests), len(protocol.Codes))
	}
	for i, tt := range tests {
		t.Run(string(tt.code), func(t *testing.T) {
			if protocol.Codes[i] != tt.code {
				t.Errorf("Codes[%d] = %q", i, protocol.Codes[i])
			}
			if got := protocol.HTTPStatus(tt.code); got != tt.status {
				t.Errorf("HTTPStatus = %d, want %d", got, tt.status)
			}
			if got := tt.code.Disposition(); got != tt.disp {
				t.Errorf("Disposition = %v, want %v", got, tt.disp)
			}
			if tt.code.Retryable() != (tt.disp == protocol.Retry) || tt.code.Final() != (tt.disp == protocol.Stop) {
				t.Errorf("Retryable = %v, Final = %v for %v", tt.code.Retryable(), tt.code.Final(), tt.disp)
			}
			if got := protocol.CodeForHTTPStatus(tt.status); got != tt.bare {
				t.Errorf("CodeForHTTPStatus(%d) = %q, want %q", tt.status, got, tt.bare)
			}
			// Round trip: the server's answer reads back to the same code.
			if got := protocol.CodeForAnswer(protocol.HTTPStatus(tt.code), tt.code); got != tt.code {
				t.Errorf("CodeForAnswer(HTTPStatus(c), c) = %q", got)
			}
			e := protocol.ReadError(answer(tt.status, fmt.Sprintf(`{"code":%q,"message":"m"}`, tt.code)))
			if e.Code != tt.code || e.Message != "m" || !e.Stated {
				t.Errorf("ReadError = %+v, want code %q message m, stated", e, tt.code)
			}
		})
	}
}

// TestCodeForHTTPStatus: statuses the server never sends still read back
// to a code with the right disposition.
func TestCodeForHTTPStatus(t *testing.T) {
	tests := []struct {
		status int
		want   protocol.Code
	}{
		{http.StatusGone, protocol.CodeNotFound},
		{http.StatusRequestTimeout, protocol.CodeUnavailable},
		{http.StatusTooManyRequests, protocol.CodeUnavailable},
		{http.StatusBadGateway, protocol.CodeUnavailable},
		{http.StatusGatewayTimeout, protocol.CodeUnavailable},
		{http.StatusNotImplemented, protocol.CodeInternal},
		{http.StatusMethodNotAllowed, protocol.CodeInvalid},
		{http.StatusUnsupportedMediaType, protocol.CodeInvalid},
		{http.StatusFound, protocol.CodeInternal},
		{599, protocol.CodeInternal},
	}
	for _, tt := range tests {
		if got := protocol.CodeForHTTPStatus(tt.status); got != tt.want {
			t.Errorf("CodeForHTTPStatus(%d) = %q, want %q", tt.status, got, tt.want)
		}
	}
}

// TestCodeForAnswer: a body's code counts only with the status the server
// sends it with.
func TestCodeForAnswer(t *testing.T) {
	tests := []struct {
		status int
		body   protocol.Code
		want   protocol.Code
	}{
		{409, protocol.CodeSuperseded, protocol.CodeSuperseded},
		{409, protocol.CodeNoSandbox, protocol.CodeNoSandbox},
		{409, "", protocol.CodeConflict},
		{502, protocol.CodeNotFound, protocol.CodeUnavailable}, // a proxy's stray body
		{404, protocol.CodeSuperseded, protocol.CodeNotFound},
		{409, "some_new_code", protocol.CodeConflict},
		{500, "some_new_code", protocol.CodeInternal},
		{503, protocol.CodeUnavailable, protocol.CodeUnavailable},
	}
	for _, tt := range tests {
		if got := protocol.CodeForAnswer(tt.status, tt.body); got != tt.want {
			t.Errorf("CodeForAnswer(%d, %q) = %q, want %q", tt.status, tt.body, got, tt.want)
		}
	}
}

// TestReadError: bodies that are not the server's JSON, or not JSON, or
// too long, give the status's code and text, and say the code was not
// stated (a proxy's refusal is not the server's).
func TestReadError(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		code    protocol.Code
		message string
		stated  bool
	}{
		{"html", 502, "<html>bad gateway</html>", protocol.CodeUnavailable, "Bad Gateway", false},
		{"proxy's 413", 413, "<html>413 Request Entity Too Large</html>", protocol.CodeTooLarge, "Request Entity Too Large", false},
		{"empty", 404, "", protocol.CodeNotFound, "Not Found", false},
		{"wrong status", 502, `{"code":"not_found","message":"from upstream"}`, protocol.CodeUnavailable, "Bad Gateway", false},
		{"no message", 409, `{"code":"superseded"}`, protocol.CodeSuperseded, "Conflict", true},
		{"unknown status", 599, "x", protocol.CodeInternal, "HTTP 599", false},
		{"huge", 503, `{"code":"unavailable","message":"` + strings.Repeat("x", 20<<10) + `"}`, protocol.CodeUnavailable, "Service Unavailable", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := protocol.ReadError(answer(tt.status, tt.body))
			if e.Code != tt.code || e.Message != tt.message || e.Stated != tt.stated {
				t.Errorf("ReadError = {%q %q stated=%v}, want {%q %q stated=%v}", e.Code, e.Message, e.Stated, tt.code, tt.message, tt.stated)
			}
		})
	}
}

// TestReadErrorScope: the scope of a refusal (ScopeRequest: the request
// itself, not its content) is read from the server's own answer only;
// an answer without it, an older server's, has none.
func TestReadErrorScope(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   protocol.Scope
	}{
		{"request", 400, `{"code":"invalid","message":"m","scope":"request"}`, protocol.ScopeRequest},
		{"content", 400, `{"code":"invalid","message":"events[0].type: unknown"}`, ""},
		{"too large request", 413, `{"code":"too_large","message":"m","scope":"request"}`, protocol.ScopeRequest},
		{"not the server's", 502, `{"code":"invalid","message":"m","scope":"request"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := protocol.ReadError(answer(tt.status, tt.body)).Scope; got != tt.want {
				t.Errorf("Scope = %q, want %q", got, tt.want)
			}
		})
	}
	e := protocol.RequestErrorf(protocol.CodeInvalid, "%s header: bad", protocol.HeaderInstance)
	if e.Scope != protocol.ScopeRequest || e.Code != protocol.CodeInvalid || e.Message != "Rein-Instance header: bad" {
		t.Errorf("RequestErrorf = %+v", e)
	}
	if !errors.Is(fmt.Errorf("post: %w", e), protocol.ErrInvalid) {
		t.Error("a request's refusal is not errors.Is its code")
	}
}

// TestRetryableFinal: errors without a wire code are the network's:
// retryable, never final; wrapped codes are found.
func TestRetryableFinal(t *testing.T) {
	tests := []struct {
		name             string
		err              error
		retryable, final bool
	}{
		{"nil", nil, false, false},
		{"network", io.ErrUnexpectedEOF, true, false},
		{"unavailable", fmt.Errorf("post: %w", protocol.Errorf(protocol.CodeUnavailable, "x")), true, false},
		{"no sandbox", protocol.Errorf(protocol.CodeNoSandbox, "x"), true, false},
		{"superseded", fmt.Errorf("stream: %w", protocol.Errorf(protocol.CodeSuperseded, "x")), false, true},
		{"too large", protocol.Errorf(protocol.CodeTooLarge, "x"), false, false},
		{"field error", &protocol.FieldError{Index: 1, Field: "delta", Reason: "must be a string"}, false, false},
		{"plain", errors.New("boom"), true, false},
	}
	for _, tt := range tests {
		if got := protocol.Retryable(tt.err); got != tt.retryable {
			t.Errorf("%s: Retryable = %v, want %v", tt.name, got, tt.retryable)
		}
		if got := protocol.Final(tt.err); got != tt.final {
			t.Errorf("%s: Final = %v, want %v", tt.name, got, tt.final)
		}
	}
}

// TestAppendable: exactly the streamed text fields append.
func TestAppendable(t *testing.T) {
	tests := []struct {
		typ   protocol.ArtifactType
		field string
		want  bool
	}{
		{protocol.ArtifactAssistantText, protocol.FieldText, true},
		{protocol.ArtifactReasoning, protocol.FieldText, true},
		{protocol.ArtifactToolCall, protocol.FieldInputText, true},
		{protocol.ArtifactToolCall, protocol.FieldOutput, true},
		{protocol.ArtifactToolCall, protocol.FieldText, false},
		{protocol.ArtifactUserMessage, protocol.FieldText, false},
		{protocol.ArtifactAssistantText, "status", false},
		{protocol.ArtifactTurn, protocol.FieldOutput, false},
	}
	for _, tt := range tests {
		if got := protocol.Appendable(tt.typ, tt.field); got != tt.want {
			t.Errorf("Appendable(%s, %s) = %v, want %v", tt.typ, tt.field, got, tt.want)
		}
	}
}

func answer(status int, body string) *http.Response {
	return &http.Response{StatusCode: status, Body: io.NopCloser(strings.NewReader(body))}
}
