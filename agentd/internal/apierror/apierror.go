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
// (protocol.Final).
func IsFinal(err error) bool { return protocol.Final(err) }

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
