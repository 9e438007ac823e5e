package protocol

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error code sent in every error body.
// Clients and agentd decide what to do by code, never by message text.
type Code string

// The error codes. HTTPStatus gives the status of each (one table, in
// wire.go); CodeForAnswer maps answers back; Code.Disposition says what a
// caller does about each.
const (
	CodeInvalid      Code = "invalid"      // 400
	CodeUnauthorized Code = "unauthorized" // 401
	CodeForbidden    Code = "forbidden"    // 403
	CodeNotFound     Code = "not_found"    // 404
	CodeConflict     Code = "conflict"     // 409
	CodeNoSandbox    Code = "no_sandbox"   // 409
	CodeSuperseded   Code = "superseded"   // 409
	CodeTooLarge     Code = "too_large"    // 413
	CodeUnavailable  Code = "unavailable"  // 503
	CodeInternal     Code = "internal"     // 500
)

// ErrorBody is the JSON body of every 4xx and 5xx response.
type ErrorBody struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// Scope is ScopeRequest on a refusal of the request itself rather
	// than of what it carries, and absent otherwise. A reader that does
	// not know the member ignores it and does what it always did; an
	// answer without it (every answer of a server from before it) says
	// nothing about which it refused.
	Scope Scope `json:"scope,omitempty"`
}

// Scope says what an error answer refuses, when that is not the content
// the request carries.
type Scope string

// ScopeRequest marks a refusal of the request around its content: a
// header the server cannot take (Rein-Instance, Rein-Command-Cursor,
// Rein-Session-Created), a session id in the path, a body it could not
// read. The same content sent in a request that is put right can still
// be taken, so a sender must not drop or change the content for it: a
// batch of events is not split, and none of its events is dropped.
const ScopeRequest Scope = "request"

// Error is an error that carries a wire code. Wrap it with fmt.Errorf("...: %w")
// freely; CodeOf finds it again.
type Error struct {
	Code    Code
	Message string
	// Stated is set by ReadError when the answer's body named this code
	// with its status, as a Rein server's answers do; otherwise the code
	// was inferred from the status alone (a proxy's page, an empty body),
	// and something other than the server may have refused the request.
	Stated bool
	// Scope is ScopeRequest when the refusal is of the request, not its
	// content (see ErrorBody.Scope). ReadError takes it only from a
	// Stated answer, as it takes the code.
	Scope Scope
}

func (e *Error) Error() string { return e.Message }

// Is makes errors.Is(err, &Error{Code: c}) match any *Error with code c, so
// callers can test for a code without caring about the message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// Errorf builds an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// RequestErrorf builds an *Error that refuses the request itself, not
// its content: Errorf with Scope ScopeRequest.
func RequestErrorf(code Code, format string, args ...any) *Error {
	e := Errorf(code, format, args...)
	e.Scope = ScopeRequest
	return e
}

// CodeOf returns the wire code of err: the code of the first *Error in its
// chain, or CodeInternal when there is none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// Sentinels for errors.Is checks by code.
var (
	ErrInvalid    = &Error{Code: CodeInvalid}
	ErrNotFound   = &Error{Code: CodeNotFound}
	ErrConflict   = &Error{Code: CodeConflict}
	ErrNoSandbox  = &Error{Code: CodeNoSandbox}
	ErrSuperseded = &Error{Code: CodeSuperseded}
	ErrTooLarge   = &Error{Code: CodeTooLarge}
)
