package apierror

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/rein-ai/rein/protocol"
)

// FromResponse reads a non-2xx response into a *protocol.Error with
// protocol.ReadError (the code by the one status table in protocol), its
// message prefixed with the status and code for the logs. The caller still
// closes the body.
func FromResponse(resp *http.Response) error {
	e := protocol.ReadError(resp)
	e.Message = fmt.Sprintf("%d %s: %s", resp.StatusCode, e.Code, e.Message)
	return e
}

// IsFinal reports whether err means the daemon should stop: its token is
// refused, its session is gone, or a newer agentd took over
// (protocol.Final); or its session was deleted and created again
// (IsReplaced).
func IsFinal(err error) bool { return protocol.Final(err) || IsReplaced(err) }

// IsReplaced reports whether err refuses a request that named, with
// protocol.HeaderSessionCreated, a session deleted since and created
// again with the same id: 409 conflict in the server's words (IsStated),
// which on agentd's two routes (the command stream, event posts) the
// server answers for nothing else. protocol's rule set calls a conflict
// a refusal of this request only; to agentd it is final, as a 404 is:
// its state belongs to a session that no longer exists, and no request
// naming it can succeed. A bare 409 (a proxy's page) is not taken for it.
func IsReplaced(err error) bool {
	var e *protocol.Error
	return errors.As(err, &e) && e.Code == protocol.CodeConflict && e.Stated
}

// IsRetryable reports whether the same request may succeed later: network
// errors (no wire code at all) and the codes protocol says to retry
// (protocol.Retryable).
func IsRetryable(err error) bool { return protocol.Retryable(err) }

// IsRejected reports whether err refuses this request only (invalid, too
// large, a conflict: protocol.Reject): the caller's other requests can
// still succeed.
func IsRejected(err error) bool {
	var e *protocol.Error
	return errors.As(err, &e) && e.Code.Disposition() == protocol.Reject
}

// IsStated reports whether err is an answer whose body named its code
// (protocol.Error.Stated): the server's own word. A code inferred from
// the status alone may be a proxy's.
func IsStated(err error) bool {
	var e *protocol.Error
	return errors.As(err, &e) && e.Stated
}

// IsRequestRefused reports whether err is the server's refusal of the
// request itself, not of what it carries: invalid or too_large in its own
// words (IsStated) with protocol.ScopeRequest, as it answers a header it
// cannot take. The content may be taken once the request is put right,
// so a caller must keep it: drop nothing, split nothing, and send it
// again. Only those two codes: they are the refusals a caller would
// otherwise drop content for, and a final answer stays final whatever
// its body says. An answer without the scope (an older server's) is not
// one: it refuses the content, as it always did.
func IsRequestRefused(err error) bool {
	var e *protocol.Error
	return errors.As(err, &e) && e.Stated && e.Scope == protocol.ScopeRequest &&
		(e.Code == protocol.CodeInvalid || e.Code == protocol.CodeTooLarge)
}
