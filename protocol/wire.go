package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// httpStatusOf is the one table from wire codes to HTTP statuses. The
// server answers with it (HTTPStatus) and every client reads answers back
// with it (CodeForHTTPStatus, ReadError), so both sides agree by
// construction.
var httpStatusOf = map[Code]int{
	CodeInvalid:      http.StatusBadRequest,
	CodeUnauthorized: http.StatusUnauthorized,
	CodeForbidden:    http.StatusForbidden,
	CodeNotFound:     http.StatusNotFound,
	CodeConflict:     http.StatusConflict,
	CodeNoSandbox:    http.StatusConflict,
	CodeSuperseded:   http.StatusConflict,
	CodeTooLarge:     http.StatusRequestEntityTooLarge,
	CodeUnavailable:  http.StatusServiceUnavailable,
	CodeInternal:     http.StatusInternalServerError,
}

// Codes lists every wire code this version knows, in table order.
var Codes = []Code{
	CodeInvalid, CodeUnauthorized, CodeForbidden, CodeNotFound, CodeConflict,
	CodeNoSandbox, CodeSuperseded, CodeTooLarge, CodeUnavailable, CodeInternal,
}

// HTTPStatus returns the HTTP status the server answers code c with; 500
// for a code this version does not know.
func HTTPStatus(c Code) int {
	if s, ok := httpStatusOf[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// CodeForHTTPStatus returns the code an error status means when the answer
// does not say (a proxy's error page, a body that is not the server's
// JSON). Where several codes share a status (409) it is the general one,
// CodeConflict. Statuses the server never sends map by class, so the retry
// rules still hold: 408, 429 and 502-504 are CodeUnavailable, other 5xx
// CodeInternal, other 4xx CodeInvalid, 410 CodeNotFound. Anything below
// 400 is not an error answer the client expected: CodeInternal.
func CodeForHTTPStatus(status int) Code {
	switch status {
	case http.StatusBadRequest:
		return CodeInvalid
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusNotFound, http.StatusGone:
		return CodeNotFound
	case http.StatusConflict:
		return CodeConflict
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return CodeUnavailable
	}
	if status >= 400 && status < 500 {
		return CodeInvalid
	}
	return CodeInternal
}

// CodeForAnswer returns the code of an error answer with the given status
// whose body named bodyCode ("" for none). The body is trusted only when
// its code is one the server sends with that status: a 409 says which
// conflict it is, but a 502 from a proxy with a stray JSON body must stay
// retryable, and a code this version does not know falls back to the
// status.
func CodeForAnswer(status int, bodyCode Code) Code {
	if s, ok := httpStatusOf[bodyCode]; ok && s == status {
		return bodyCode
	}
	return CodeForHTTPStatus(status)
}

// maxErrorBody bounds how much of an error body ReadError reads: error
// bodies are small JSON objects, and a proxy's HTML page must not be
// buffered whole.
const maxErrorBody = 16 << 10

// ReadError reads a non-2xx answer into an *Error: the code by
// CodeForAnswer, the message from the body, else the status text, and
// Stated, with the body's Scope, when the body's code was the one taken. It
// reads at most 16 KiB of the body; the caller still closes it.
func ReadError(resp *http.Response) *Error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body ErrorBody
	_ = json.Unmarshal(b, &body) // a page that is not JSON leaves it empty
	code := CodeForAnswer(resp.StatusCode, body.Code)
	msg := body.Message
	if msg == "" || code != body.Code {
		msg = http.StatusText(resp.StatusCode)
		if msg == "" {
			msg = fmt.Sprintf("HTTP %d", resp.StatusCode)
		}
	}
	e := &Error{Code: code, Message: msg, Stated: code == body.Code}
	if e.Stated {
		// Only the server's own answer says what it refused: a body
		// whose code was not taken (a proxy's 502 with a stray JSON
		// body) is not the server's word on anything.
		e.Scope = body.Scope
	}
	return e
}

// Disposition is what a caller should do after an error answer.
type Disposition int

// The dispositions; see Code.Disposition.
const (
	// Retry: the same request may succeed later, unchanged. Back off and
	// send it again.
	Retry Disposition = iota
	// Reject: this request can never succeed as it is, but the caller's
	// other requests can. Fix or drop it (split a batch that is too
	// large, pick another id); do not send it again.
	Reject
	// Stop: the caller's standing is gone: its credential is refused, its
	// session does not exist, or a newer instance replaced it. No request
	// of the same kind will succeed; stop and say why.
	Stop
)

func (d Disposition) String() string {
	switch d {
	case Retry:
		return "retry"
	case Reject:
		return "reject"
	case Stop:
		return "stop"
	}
	return fmt.Sprintf("Disposition(%d)", int(d))
}

// Disposition is the one rule set for what an error code means to the
// caller that got it. Codes share a status but not a disposition:
// superseded (409) is Stop for the sandbox it replaced, no_sandbox (409)
// is Retry for a client whose command waits for a sandbox to connect, and
// conflict (409, the session exists) is Reject. A code this version does
// not know is treated as internal (Retry); CodeForAnswer never yields one.
func (c Code) Disposition() Disposition {
	switch c {
	case CodeInvalid, CodeTooLarge, CodeConflict:
		return Reject
	case CodeUnauthorized, CodeForbidden, CodeNotFound, CodeSuperseded:
		return Stop
	}
	// CodeInternal, CodeUnavailable, CodeNoSandbox and unknown codes.
	return Retry
}

// Retryable reports whether the same request may succeed later: Disposition
// is Retry.
func (c Code) Retryable() bool { return c.Disposition() == Retry }

// Final reports whether the caller should stop altogether: Disposition is
// Stop.
func (c Code) Final() bool { return c.Disposition() == Stop }

// Retryable reports whether err leaves the request worth sending again:
// an error without a wire code (the network, a timeout, a cut stream) or
// a code whose Disposition is Retry.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var e *Error
	if !errors.As(err, &e) {
		return true
	}
	return e.Code.Retryable()
}

// Final reports whether err carries a wire code whose Disposition is Stop.
// Network errors are never final.
func Final(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code.Final()
}
