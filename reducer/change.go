package reducer

import (
	"encoding/json"
	"strings"

	"github.com/rein-ai/rein/protocol"
)

// ChangeKind says what a Change does.
type ChangeKind string

// Change kinds. The first three are artifact changes and carry a revision;
// the last two are session changes and carry none.
const (
	Created        ChangeKind = "created"
	Appended       ChangeKind = "appended"
	Set            ChangeKind = "set"
	StatusChanged  ChangeKind = "status"
	SummaryChanged ChangeKind = "summary"
)

// Change is one effect of an event.
type Change struct {
	Kind ChangeKind
	// Rev is the session revision of an artifact change (0 for session changes).
	Rev int64
	// Seq is the artifact's position (artifact changes).
	Seq int64
	// Artifact is the artifact as created (Created only). It is the
	// change's own copy: later changes never modify it.
	Artifact *protocol.Artifact
	// Field and Append (Appended) or Set (Set): one field of artifact Seq.
	Field  string
	Append string
	Set    json.RawMessage
	// Status is the session status the event implies (StatusChanged). The
	// server compares it with the stored status, which also depends on the
	// sandbox connection, and broadcasts only a real change.
	Status protocol.SessionStatus
	// Summary is the new session summary (SummaryChanged).
	Summary string
}

// IsArtifact reports whether c changes an artifact (and so has a revision).
func (c Change) IsArtifact() bool {
	return c.Kind == Created || c.Kind == Appended || c.Kind == Set
}

// Update returns the artifact_updated payload of an Appended or Set change.
func (c Change) Update() protocol.ArtifactUpdate {
	u := protocol.ArtifactUpdate{Seq: c.Seq, Field: c.Field}
	if c.Kind == Appended {
		s := c.Append
		u.Append = &s
	} else {
		u.Set = c.Set
	}
	return u
}

// Coalesce merges runs of consecutive appends to the same field of the same
// artifact into one change carrying the last revision. Folding the result
// into a client model gives the same artifacts as folding the input: the
// text is the same and the artifact's rev is the run's last one. The server
// uses it to send a batch of deltas as few stream events.
func Coalesce(changes []Change) []Change {
	out := make([]Change, 0, len(changes))
	for i := 0; i < len(changes); {
		c := changes[i]
		j := i + 1
		if c.Kind == Appended {
			size := len(c.Append)
			for j < len(changes) && changes[j].Kind == Appended && changes[j].Seq == c.Seq && changes[j].Field == c.Field {
				size += len(changes[j].Append)
				j++
			}
			if j > i+1 {
				// One copy of the run's text: appending delta by delta
				// copied the text so far for each one, quadratic in a
				// batch of 500 deltas.
				var b strings.Builder
				b.Grow(size)
				for _, d := range changes[i:j] {
					b.WriteString(d.Append)
				}
				c.Append = b.String()
				c.Rev = changes[j-1].Rev
			}
		}
		out = append(out, c)
		i = j
	}
	return out
}
