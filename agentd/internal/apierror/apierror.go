package apierror

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/rein-ai/rein/protocol"
)

// maxErrorBody bounds how much of an error body is read: error bodies are
// small JSON objects, and a proxy's HTML page must not be buffered whole.
const maxErrorBody = 16 << 10

// FromResponse reads a non-2xx response into a *protocol.Error. The code
// comes from the JSON body when it has one, else from the status, which is
// the inverse of the server's one code->status table. The caller still
// closes the body.
func FromResponse(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body protocol.ErrorBody
	_ = json.Unmarshal(b, &body)
	code := codeOfStatus(resp.StatusCode)
	// Trust the body's code only when it matches the status: a 409 says
	// which conflict it is, but a 502 from a proxy with a stray JSON body
	// must stay retryable.
	if body.Code != "" && statusOfCode(body.Code) == resp.StatusCode {
		code = body.Code
	}
	msg := body.Message
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &protocol.Error{Code: code, Message: fmt.Sprintf("%d %s: %s", resp.StatusCode, code, msg)}
}

func codeOfStatus(status int) protocol.Code {
	switch {
	case status == http.StatusBadRequest:
		return protocol.CodeInvalid
	case status == http.StatusUnauthorized:
		return protocol.CodeUnauthorized
	case status == http.StatusForbidden:
		return protocol.CodeForbidden
	case status == http.StatusNotFound, status == http.StatusGone:
		return protocol.CodeNotFound
	case status == http.StatusConflict:
		return protocol.CodeConflict
	case status == http.StatusRequestEntityTooLarge:
		return protocol.CodeTooLarge
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout, status == http.StatusServiceUnavailable:
		return protocol.CodeUnavailable
	case status >= 500:
		return protocol.CodeInternal
	default:
		return protocol.CodeInvalid
	}
}

func statusOfCode(c protocol.Code) int {
	switch c {
	case protocol.CodeInvalid:
		return http.StatusBadRequest
	case protocol.CodeUnauthorized:
		return http.StatusUnauthorized
	case protocol.CodeForbidden:
		return http.StatusForbidden
	case protocol.CodeNotFound:
		return http.StatusNotFound
	case protocol.CodeConflict, protocol.CodeNoSandbox, protocol.CodeSuperseded:
		return http.StatusConflict
	case protocol.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// IsFinal reports whether err means retrying can never succeed: the token
// is refused, the session is gone, or a newer agentd took over.
func IsFinal(err error) bool {
	var e *protocol.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case protocol.CodeUnauthorized, protocol.CodeForbidden, protocol.CodeNotFound,
		protocol.CodeSuperseded, protocol.CodeConflict, protocol.CodeNoSandbox:
		return true
	}
	return false
}

// IsRetryable reports whether the same request may succeed later: network
// errors (no wire code at all) and the server's 5xx/429 answers.
func IsRetryable(err error) bool {
	var e *protocol.Error
	if !errors.As(err, &e) {
		return true
	}
	return e.Code == protocol.CodeInternal || e.Code == protocol.CodeUnavailable
}
