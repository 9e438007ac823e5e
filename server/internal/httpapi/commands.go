package httpapi

import (
	"net/http"
	"strconv"

	"github.com/rein-ai/rein/protocol"
)

// commandCursorOf returns the protocol.HeaderCommandCursor of an event post:
// the sandbox's acknowledgement of the commands it took. ok is false
// without the header. A value it cannot take refuses the request
// (protocol.ScopeRequest), not the events the post carries.
func commandCursorOf(r *http.Request) (cursor int64, ok bool, err error) {
	v := r.Header.Get(protocol.HeaderCommandCursor)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false, protocol.RequestErrorf(protocol.CodeInvalid, "%s header: must be a command id (an integer >= 0), got %q", protocol.HeaderCommandCursor, v)
	}
	return n, true, nil
}

// sessionCreatedOf returns the protocol.HeaderSessionCreated of a sandbox
// request: the createdAt of the session its state belongs to, 0 without
// the header (an agentd from before it, another client), which the
// server then does not check. A value it cannot take refuses the request
// (protocol.ScopeRequest): a garbled state file in the sandbox must not
// cost it the events it posts.
func sessionCreatedOf(r *http.Request) (int64, error) {
	v := r.Header.Get(protocol.HeaderSessionCreated)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, protocol.RequestErrorf(protocol.CodeInvalid, "%s header: must be the session's createdAt (Unix ms, an integer > 0), got %q", protocol.HeaderSessionCreated, v)
	}
	return n, nil
}
