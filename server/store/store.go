package store

import (
	"fmt"
	"strings"

	"github.com/rein-ai/rein/protocol"
)

// Session is a session row: the wire record plus what the service needs to
// resume after a restart.
type Session struct {
	protocol.Session
	// Rev is the revision of the session's latest artifact change.
	Rev int64
	// LastCommandID is the id of the newest command (0 before any).
	LastCommandID int64
	// CurrentInstance is the Rein-Instance that last opened the command
	// stream ("" when none ever did).
	CurrentInstance string
	// Instances lists every Rein-Instance that ever held the command stream;
	// all but CurrentInstance are superseded.
	Instances []string
	// Version counts the writes of the row: UpdateSession stores it (the
	// writer gives the version it read plus one), CreateSession starts it
	// at 0. A writer that shares the database with others checks it with
	// Expect, so it never writes over a change it has not seen.
	Version int64
	// StreamEpoch counts the openings of the session's command stream.
	// Every opening stores a new one, on whichever server it lands; a
	// server whose open stream carries an older epoch was taken over and
	// closes it (the fence between replicas).
	StreamEpoch int64
}

// Event is one entry of a session's append-only event log. Body is the
// protocol.Event JSON including the server-stamped receivedAt.
type Event struct {
	Pos      int64
	Instance string
	AgentSeq int64
	Body     []byte
}

// Artifact is a stored artifact: Body is its JSON exactly as clients get it.
type Artifact struct {
	Seq  int64
	Rev  int64
	Body []byte
}

// Snapshot is what an artifact stream replays: the artifacts changed after
// some revision, in revision order, and the session revision they bring a
// client up to. Both are read in one read transaction.
type Snapshot struct {
	Rev       int64
	Artifacts []Artifact
	// Created is the session's createdAt, read with the artifacts: a
	// session deleted and created again under its id has another, so a
	// stream can name the session its replay is of
	// (protocol.HeaderSessionCreated).
	Created int64
	// More, on a page (Store.ArtifactsPage), says that artifacts with
	// revisions above the page's last one and at most Rev were left for
	// the next page; a page without it holds every artifact up to Rev.
	More bool
}

// PageCut returns how many of a page's candidate artifacts (or log
// events), whose bodies take sizes bytes (in page order), the page holds:
// at most limit, the first always (so paging always gets on, however
// large one artifact),
// then each while the bodies together stay within maxBytes (maxBytes <=
// 0: no byte bound). A count alone let one page of large artifacts (tool
// output of megabytes each) hold a hundred of them in memory at once.
func PageCut(sizes []int64, limit int, maxBytes int) int {
	n, sum := 0, int64(0)
	for _, size := range sizes {
		if n == limit || (n > 0 && maxBytes > 0 && sum+size > int64(maxBytes)) {
			break
		}
		n, sum = n+1, sum+size
	}
	return n
}

// Command is a stored command: Body is the protocol.Command JSON including
// its id, exactly as the command stream sends it.
type Command struct {
	ID        int64
	Body      []byte
	CreatedAt int64
	// Key is the client's Idempotency-Key it was sent with ("" for
	// none): a session stores at most one command per key.
	Key string
}

// Op is one write of a group commit. Ops are applied in order in a single
// transaction: all of them are stored or none. The set of ops is closed (a
// backend switches over the types below); a new op is a contract change
// that storetest covers.
type Op interface{ storeOp() }

// CreateSession inserts a new session row (Rev, LastCommandID and
// CurrentInstance start at zero). An id that exists fails the commit.
type CreateSession struct{ Session protocol.Session }

// DeleteSession removes a session and, by cascade, everything it owns:
// events, artifacts and their appends, commands, instances and its sandbox
// token. A session created again with the same id starts empty.
type DeleteSession struct{ ID string }

// UpdateSession writes the mutable columns of a session row: status,
// summary, lastHeartbeat, rev, last command id, current instance,
// acknowledged command id, version and stream epoch (Session.AckedCommandID; PendingCommands is not
// stored: reads derive it as LastCommandID - AckedCommandID). A
// missing session fails the commit with CodeNotFound. Instances is not
// written (see AddInstance).
type UpdateSession struct{ Session Session }

// Unstage moves every staged event into the event log (see Stager); a
// Store that stages nothing ignores it.
type Unstage struct{}

// AppendEvents appends entries to a session's event log. Pos is chosen by
// the server; a pos already stored fails the commit.
type AppendEvents struct {
	SessionID string
	Events    []Event
	// Stage asks a Stager to stage them rather than write them into the
	// log at once (see Stager); other stores ignore it. A Stager stages
	// them anyway while the session has staged events, so that the log
	// reads in order.
	Stage bool
}

// PutArtifacts inserts or replaces artifacts by (session, seq). Each body
// is complete: it also drops the artifact's pending appends.
type PutArtifacts struct {
	SessionID string
	Artifacts []Artifact
}

// PutArtifactHeads replaces the bodies of stored artifacts and keeps
// their pending appends: each Body is the artifact as it is now but for
// its streamed fields, which hold the text they held when their pending
// appends began, so that a read merging those appends (MergeAppends)
// gives the artifact whole. Rev is the artifact's new revision; the
// length of the pending appends is unchanged. An artifact that is not
// stored fails the commit. It is how the server changes a small field of
// an artifact of many MiB, a tool output finishing, without writing its
// text again: that write held the whole text in memory, in the server
// and again in the database's driver.
type PutArtifactHeads struct {
	SessionID string
	Artifacts []Artifact
}

// AppendArtifacts records appends to the streamed fields of artifacts
// already stored, instead of rewriting their bodies: rewriting a growing
// artifact on every commit makes a long stream quadratic. Appends pile up
// until the next PutArtifacts of the artifact (PutArtifactHeads keeps
// them). An adapter's reads must return the body with every pending
// append merged in, exactly as MergeAppends does, so a client never sees
// the difference.
type AppendArtifacts struct {
	SessionID string
	Appends   []ArtifactAppend
}

// ArtifactAppend is what one commit appended to one artifact.
type ArtifactAppend struct {
	Seq int64
	// Rev is the artifact's revision after the appends.
	Rev    int64
	Fields []FieldAppend
}

// FieldAppend is text appended to one string field of an artifact.
type FieldAppend struct {
	Field string
	Text  string
}

// NULAppender is implemented by a Store whose AppendArtifacts may carry
// text holding NUL (U+0000: a tool's output of a binary file, "\u0000"
// in JSON) and read it back as written: SQLite's, and PostgreSQL's, which
// keeps such text as bytes since its text type cannot hold NUL. Without
// it the server writes an artifact's whole body instead of appending
// such text, where JSON escapes it; an artifact streamed with NUL then
// costs its whole size at every commit.
type NULAppender interface {
	AppendsNUL() bool
}

// AddCommand stores a command; its id is chosen by the server and an id
// already stored fails the commit, as does a Key the session already
// stored a command under.
type AddCommand struct {
	SessionID string
	Command   Command
}

// AddInstance records that a Rein-Instance held the command stream.
// Adding one already recorded is a no-op (it keeps its first place).
type AddInstance struct {
	SessionID string
	Instance  string
	At        int64
}

// SetSandboxToken stores (or replaces) a session's sandbox token hash: the
// SHA-256 of the token, never the token.
type SetSandboxToken struct {
	SessionID string
	Hash      [32]byte
	At        int64
}

// Expect makes the commit fail with a *StaleError unless the session
// exists and its row holds Version and, when CreatedAt is not 0, was
// created at CreatedAt: a session deleted and created again with the same
// id counts its versions from 0 again, so a version alone can match a
// writer's view of the deleted one. A writer sharing the database with
// other servers puts one first for every session its commit changes that
// it read before: its cached view of those sessions is then the
// database's, or nothing is written and it reads them again. Backends lock
// the expected rows in id order before anything else of the commit, so
// two writers never deadlock and a check never goes stale before the
// commit ends.
type Expect struct {
	SessionID string
	Version   int64
	CreatedAt int64 // 0: not checked
}

// StaleError is the failure of a commit whose Expects did not hold: the
// sessions IDs changed (or are gone) since the writer read them.
type StaleError struct{ IDs []string }

func (e *StaleError) Error() string {
	return fmt.Sprintf("sessions changed by another server: %s", strings.Join(e.IDs, ", "))
}

func (Expect) storeOp()           {}
func (CreateSession) storeOp()    {}
func (DeleteSession) storeOp()    {}
func (UpdateSession) storeOp()    {}
func (AppendEvents) storeOp()     {}
func (Unstage) storeOp()          {}
func (PutArtifacts) storeOp()     {}
func (PutArtifactHeads) storeOp() {}
func (AppendArtifacts) storeOp()  {}
func (AddCommand) storeOp()       {}
func (AddInstance) storeOp()      {}
func (SetSandboxToken) storeOp()  {}
