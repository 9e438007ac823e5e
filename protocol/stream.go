package protocol

import (
	"encoding/json"
	"fmt"
)

// SSE event names of the three streams.
const (
	// Artifact stream.
	SSEArtifactSnapshot = "artifact_snapshot"
	SSEArtifactCreated  = "artifact_created"
	SSEArtifactUpdated  = "artifact_updated"
	// Session stream.
	SSESessionSnapshot = "session_snapshot"
	SSESessionCreated  = "session_created"
	SSESessionUpdated  = "session_updated"
	SSESessionRemoved  = "session_removed"
	// Both client streams, after the replay.
	SSESnapshotComplete = "snapshot_complete"
	// Command stream.
	SSECommand = "command"
)

// ArtifactPayload is the data of artifact_snapshot and artifact_created.
type ArtifactPayload struct {
	Artifact *Artifact `json:"artifact"`
}

// ArtifactUpdate is the data of artifact_updated: one field of the artifact
// at Seq either has Append appended (a string field) or is replaced by Set.
// Exactly one of Append and Set is present.
type ArtifactUpdate struct {
	Seq    int64           `json:"seq"`
	Field  string          `json:"field"`
	Append *string         `json:"append,omitempty"`
	Set    json.RawMessage `json:"set,omitempty"`
}

// Apply applies the update to a the way a client does; rev is the SSE
// event id the update arrived with, which becomes the artifact's rev.
// An update that cannot be applied leaves a unchanged.
func (u *ArtifactUpdate) Apply(a *Artifact, rev int64) error {
	if a.Fields == nil {
		a.Fields = map[string]any{}
	}
	if u.Append != nil {
		prev, _ := a.Fields[u.Field].(string)
		if raw, ok := a.Fields[u.Field].(json.RawMessage); ok {
			_ = json.Unmarshal(raw, &prev)
		}
		a.Fields[u.Field] = prev + *u.Append
		a.Rev = rev
		return nil
	}
	var v any
	if err := json.Unmarshal(u.Set, &v); err != nil {
		return fmt.Errorf("artifact_updated seq=%d field=%s: %w", u.Seq, u.Field, err)
	}
	a.Fields[u.Field] = v
	a.Rev = rev
	return nil
}

// SnapshotComplete is the data of snapshot_complete. On the artifact stream
// Rev is the revision the replay brought the client up to, and Full says
// the replay held every artifact of the session: there was no
// Last-Event-ID, or it was above the session's revision (the history went
// back: a restore from an older backup, a failover to a standby that had
// not caught up, the session deleted and created again). A client then
// drops whatever it holds that the replay did not send; otherwise (a
// resume) the replay held only what changed, and it keeps the rest.
type SnapshotComplete struct {
	Rev  int64 `json:"rev"`
	Full bool  `json:"full,omitempty"`
}

// SessionPayload is the data of session_snapshot and session_created.
type SessionPayload struct {
	Session Session `json:"session"`
}

// SessionFields are the fields session_updated can carry.
type SessionFields struct {
	Status  *SessionStatus `json:"status,omitempty"`
	Summary *string        `json:"summary,omitempty"`
	// PendingApprovals is the session's new count of permission requests
	// waiting for an answer (Session.PendingApprovals).
	PendingApprovals *int `json:"pendingApprovals,omitempty"`
	// AckedCommandID and PendingCommands are sent together when either
	// changes (a command accepted, or the sandbox acknowledged some).
	AckedCommandID  *int64 `json:"ackedCommandId,omitempty"`
	PendingCommands *int64 `json:"pendingCommands,omitempty"`
}

// SessionUpdated is the data of session_updated.
type SessionUpdated struct {
	ID     string        `json:"id"`
	Fields SessionFields `json:"fields"`
}

// SessionRemoved is the data of session_removed.
type SessionRemoved struct {
	ID string `json:"id"`
}

// HeaderInstance is the header agentd sends on every request: a random id
// per agentd process, so the server can refuse a superseded sandbox.
const HeaderInstance = "Rein-Instance"

// HeaderCommandCursor is the header by which a sandbox acknowledges
// commands on POST /sessions/:id/events (heartbeats included): the id of
// the last command such that it and every one before it were taken by the
// agent. The server records it as the session's AckedCommandID.
const HeaderCommandCursor = "Rein-Command-Cursor"

// HeaderIdempotencyKey is the header by which a client makes a command
// safe to send again: POST /sessions/:id/commands with a key the session
// already stored a command under stores nothing and answers 202 with that
// command's id (and HeaderIdempotentReplayed), so a client that lost the
// answer to a timeout or a cut connection can retry without the agent
// getting the prompt twice. The same key with a different command is 409
// conflict. A key is kept as long as its command (until the session is
// deleted). See ValidateIdempotencyKey for its form.
const HeaderIdempotencyKey = "Idempotency-Key"

// HeaderIdempotentReplayed is "true" on the 202 of a command whose
// HeaderIdempotencyKey named a command already stored: nothing new was
// stored.
const HeaderIdempotentReplayed = "Idempotent-Replayed"

// HeaderSessionCreated is a header of the command stream's and the
// artifact stream's 200 answer: the session's createdAt (Unix ms). A
// session deleted and created again with the same id has another, so a
// sandbox that keeps state per session id (agentd's state dir: outbox,
// command cursor, conversation) can tell the session it saved it for from
// a new one and not apply it there, and a client resuming an artifact
// stream (whose Last-Event-ID is only a revision) can tell that what it
// holds is another session's and start again without Last-Event-ID.
//
// A sandbox sends it too, on the command stream's request and on event
// posts: the createdAt of the session its state belongs to. When the
// session holding the id has another, the request is refused with
// CodeConflict before anything of it is taken (its Last-Event-ID or
// HeaderCommandCursor, its events): a sandbox left over from a session
// deleted and created again cannot act on the new one, which without
// authentication nothing else tells apart.
const HeaderSessionCreated = "Rein-Session-Created"

// ValidateIdempotencyKey checks a HeaderIdempotencyKey value: 1 to
// MaxIdempotencyKeyLen visible ASCII characters (a UUID, a random token,
// a client's own request id). The error names the header and says why.
func ValidateIdempotencyKey(k string) error {
	if k == "" || len(k) > MaxIdempotencyKeyLen {
		return Errorf(CodeInvalid, "%s header: must be 1 to %d characters, got %d", HeaderIdempotencyKey, MaxIdempotencyKeyLen, len(k))
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x21 || c > 0x7e {
			return Errorf(CodeInvalid, "%s header: must be visible ASCII (no spaces), got byte 0x%02x at %d", HeaderIdempotencyKey, c, i)
		}
	}
	return nil
}
