package protocol

import "strings"

// SessionStatus is where a session is in its lifecycle.
type SessionStatus string

// Session statuses, see PROTOCOL.md "Status rules".
const (
	StatusBootstrapping SessionStatus = "bootstrapping"
	StatusLive          SessionStatus = "live"
	StatusIdle          SessionStatus = "idle"
	StatusDisconnected  SessionStatus = "disconnected"
)

// Session is the session record as every route and stream shows it.
// Summary, Project and LastHeartbeat are null on the wire when unset.
type Session struct {
	ID            string        `json:"id"`
	Status        SessionStatus `json:"status"`
	Summary       *string       `json:"summary"`
	Project       *string       `json:"project"`
	CreatedAt     int64         `json:"createdAt"`
	LastHeartbeat *int64        `json:"lastHeartbeat"`
	// PendingApprovals is how many permission requests of the session wait
	// for an answer (see GET /approvals): not those answered already whose
	// agent has not taken the answer yet (Approval.Answer), which need
	// nobody. The server derives it; stores leave it 0.
	PendingApprovals int `json:"pendingApprovals"`
	// AckedCommandID is the id of the last command the session's sandbox
	// acknowledged: it and every command before it were taken by the
	// agent (see "Command acknowledgement" in the README). Omitted when 0,
	// like PendingCommands.
	AckedCommandID int64 `json:"ackedCommandId,omitempty"`
	// PendingCommands counts the commands accepted (202) and not yet
	// acknowledged: they are delivered to the sandbox that connects next,
	// or again to the one connected.
	PendingCommands int64 `json:"pendingCommands,omitempty"`
}

// CreateSessionRequest is the optional body of POST /sessions/:id.
type CreateSessionRequest struct {
	Project *string `json:"project,omitempty"`
	// Prompt, when set, is stored as the session's command 1, a prompt
	// delivered when a sandbox first connects.
	Prompt *string `json:"prompt,omitempty"`
}

// ReservedSessionID cannot be a session id because it is a route
// (GET /sessions/stream).
const ReservedSessionID = "stream"

// reservedSessionIDs are the route segments under /sessions/ that a
// session id would shadow: GET /sessions/stream and
// POST /sessions/stream-ticket.
var reservedSessionIDs = map[string]bool{ReservedSessionID: true, "stream-ticket": true}

// ValidateSessionID reports why id cannot be a session id, or nil. Besides
// the reserved route names, ids made only of dots (".", "..", "...") are
// refused: in a URL "." and ".." are path segments that clients remove
// (the web view on #/s/.. would post to /sessions/commands), and the rest
// are refused with them so the rule is simple to state.
func ValidateSessionID(id string) error {
	if reservedSessionIDs[id] {
		return Errorf(CodeInvalid, "session id %q is reserved", id)
	}
	if err := validateID(id); err != nil {
		return Errorf(CodeInvalid, "session id: %s", err.Error())
	}
	if strings.Trim(id, ".") == "" {
		return Errorf(CodeInvalid, "session id %q is reserved: an id made only of dots is a relative path segment (browsers and URL libraries resolve it away)", id)
	}
	return nil
}

// ValidateProject reports why p cannot be a project name, or nil. Projects
// follow the id charset so they are safe in URLs and logs.
func ValidateProject(p string) error {
	if err := validateID(p); err != nil {
		return Errorf(CodeInvalid, "project: %s", err.Error())
	}
	return nil
}

type idError string

func (e idError) Error() string { return string(e) }

// validateID checks the id charset [A-Za-z0-9._-] and length 1..MaxIDLen.
func validateID(id string) error {
	if id == "" {
		return idError("must not be empty")
	}
	if len(id) > MaxIDLen {
		return idError("longer than 128 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return idError("may contain only letters, digits, '.', '_' and '-' (found " + quoteByte(c) + ")")
		}
	}
	return nil
}

func quoteByte(c byte) string {
	if c < 0x20 || c >= 0x7f {
		return "a non-printable byte"
	}
	return "'" + string(rune(c)) + "'"
}

// Summarize derives a session summary from a prompt: the first line,
// whitespace collapsed, cut to 80 runes plus "…".
func Summarize(text string) string {
	text = strings.TrimSpace(text)
	if i := strings.IndexByte(text, '\n'); i >= 0 {
		text = text[:i]
	}
	text = strings.Join(strings.Fields(text), " ")
	r := []rune(text)
	if len(r) > 80 {
		return string(r[:80]) + "…"
	}
	return text
}

// CreatedSession is the 201 body of POST /sessions/:id: the record plus the
// session's sandbox token, which the server shows only this once (it keeps
// only a hash).
type CreatedSession struct {
	Session
	SandboxToken string `json:"sandboxToken"`
}

// SandboxToken is the body of POST /sessions/:id/token: the session's new
// sandbox token. The previous one stops working at once.
type SandboxToken struct {
	SandboxToken string `json:"sandboxToken"`
}

// StreamTicket is the body of POST /sessions/:id/stream-ticket and POST
// /sessions/stream-ticket: a short-lived credential for one stream, passed
// as ?ticket= where a client (EventSource) cannot send headers.
type StreamTicket struct {
	Ticket string `json:"ticket"`
	// ExpiresAt is in milliseconds since the Unix epoch.
	ExpiresAt int64 `json:"expiresAt"`
}
