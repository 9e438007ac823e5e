package client

import (
	"fmt"
	"sort"
	"strings"

	"github.com/rein-ai/rein/protocol"
)

// Transcript is a client's model of one session's artifacts, built from
// the artifact stream: artifacts are placed by seq, a snapshot replaces
// what is held, an update changes one field, and the end of a full replay
// drops what the replay did not send.
type Transcript struct {
	bySeq map[int64]*protocol.Artifact
	// replayed: the seqs this connection's replay sent, until its
	// snapshot_complete.
	replayed map[int64]bool
	dropped  []*protocol.Artifact
	// streams holds, per artifact and field, the text its appends built,
	// whose String is the field's value: an append costs its own length.
	// Built anew for each append (protocol.ArtifactUpdate.Apply), the
	// field cost its whole length again each time: a tool's output of
	// 20 MiB in 4 KiB appends took 19 s of CPU to fold, growing with the
	// square of the output.
	streams map[int64]map[string]*strings.Builder
	// turns and running count the turn artifacts held and those of them
	// not ended (TurnEnded), kept as artifacts come, change and go: rein
	// watch --until-idle asks after every event, and counting them anew
	// cost the whole transcript each time (a sort of every artifact: 30
	// ms an event in a session of 30,000, slower than a fast stream).
	turns, running int
	// only, when not nil, is the types of artifact held; others the seqs
	// of the artifacts of other types seen, whose updates are taken in
	// and dropped.
	only   map[protocol.ArtifactType]bool
	others map[int64]bool
}

// NewTranscript returns an empty transcript.
func NewTranscript() *Transcript {
	return &Transcript{bySeq: map[int64]*protocol.Artifact{}, streams: map[int64]map[string]*strings.Builder{}}
}

// NewTranscriptOf returns an empty transcript that holds only the
// artifacts of the given types: the others' events are taken in (an
// update to one is not an error) and dropped. For a program that needs
// part of a session only (rein watch --json, which prints events as they
// come, needs the turns for --until-idle): the whole transcript costs as
// much memory as the session, up to --max-session-bytes.
func NewTranscriptOf(types ...protocol.ArtifactType) *Transcript {
	t := NewTranscript()
	t.only, t.others = map[protocol.ArtifactType]bool{}, map[int64]bool{}
	for _, typ := range types {
		t.only[typ] = true
	}
	return t
}

// Apply applies one stream event and returns the artifact it changed, or
// nil for an event that changes none (EventConnected, snapshot_complete)
// or changes an artifact it does not hold (NewTranscriptOf).
// The returned artifact is the transcript's own: do not change it. At
// the end of a full replay (ArtifactEvent.Full) the artifacts the replay
// did not send are dropped: the session's history went back below them
// (Dropped lists them).
func (t *Transcript) Apply(ev ArtifactEvent) (*protocol.Artifact, error) {
	switch ev.Name {
	case EventConnected:
		t.replayed = map[int64]bool{}
		return nil, nil
	case protocol.SSEArtifactSnapshot:
		if t.replayed != nil && ev.Artifact != nil {
			t.replayed[ev.Artifact.Seq] = true
		}
	case protocol.SSESnapshotComplete:
		t.dropped = t.dropped[:0]
		if ev.Full && t.replayed != nil {
			for seq, a := range t.bySeq {
				if !t.replayed[seq] {
					t.dropped = append(t.dropped, a)
					t.count(a, -1)
					delete(t.bySeq, seq)
					delete(t.streams, seq)
				}
			}
			for seq := range t.others {
				if !t.replayed[seq] {
					delete(t.others, seq)
				}
			}
			sort.Slice(t.dropped, func(i, j int) bool { return t.dropped[i].Seq < t.dropped[j].Seq })
		}
		t.replayed = nil
		return nil, nil
	}
	switch {
	case ev.Artifact != nil && t.only != nil && !t.only[ev.Artifact.Type]:
		// Not held; what was held at its seq (another session's, or a
		// history that went back) is no longer the session's.
		seq := ev.Artifact.Seq
		t.count(t.bySeq[seq], -1)
		delete(t.bySeq, seq)
		delete(t.streams, seq)
		t.others[seq] = true
		return nil, nil
	case ev.Artifact != nil:
		a := ev.Artifact.Clone()
		if t.others != nil {
			delete(t.others, a.Seq)
		}
		t.count(t.bySeq[a.Seq], -1)
		t.count(a, +1)
		t.bySeq[a.Seq] = a
		delete(t.streams, a.Seq)
		return a, nil
	case ev.Update != nil:
		a := t.bySeq[ev.Update.Seq]
		if a == nil && t.others[ev.Update.Seq] {
			return nil, nil
		}
		if a == nil {
			return nil, fmt.Errorf("artifact_updated rev=%d: unknown artifact seq %d", ev.Rev, ev.Update.Seq)
		}
		// Counted again as it is after the update, whatever it changed
		// (a turn ends with its endedAt).
		t.count(a, -1)
		defer t.count(a, +1)
		if t.appendTo(a, ev.Update, ev.Rev) {
			return a, nil
		}
		if err := ev.Update.Apply(a, ev.Rev); err != nil {
			return nil, err
		}
		return a, nil
	}
	return nil, nil
}

// count adds sign (+1 or -1) to the turn counts for a, when it is a turn
// (a may be nil).
func (t *Transcript) count(a *protocol.Artifact, sign int) {
	if a == nil || a.Type != protocol.ArtifactTurn {
		return
	}
	t.turns += sign
	if !TurnEnded(a) {
		t.running += sign
	}
}

// Turns returns how many turns the transcript holds and how many of them
// have not ended (TurnEnded). It costs nothing however long the session:
// the counts are kept as events are applied.
func (t *Transcript) Turns() (total, running int) { return t.turns, t.running }

// TurnEnded reports whether a turn artifact has ended and its closing
// updates are all in: the reducer sets endedAt after status, stopReason,
// error and resultText.
func TurnEnded(a *protocol.Artifact) bool {
	st := protocol.TurnStatus(a.String("status"))
	return st != "" && st != protocol.TurnRunning && a.Fields["endedAt"] != nil
}

// appendTo applies u to a when it appends to a string field, in the
// field's builder, and reports whether it did (the rest is left to
// ArtifactUpdate.Apply).
func (t *Transcript) appendTo(a *protocol.Artifact, u *protocol.ArtifactUpdate, rev int64) bool {
	cur, ok := a.Fields[u.Field].(string)
	if u.Append == nil || (!ok && a.Fields[u.Field] != nil) {
		return false
	}
	fields := t.streams[a.Seq]
	if fields == nil {
		fields = map[string]*strings.Builder{}
		t.streams[a.Seq] = fields
	}
	b := fields[u.Field]
	// The builder's text is the field's while nothing else set it: the
	// same bytes, which == finds at once (the same pointer and length).
	if b == nil || b.String() != cur {
		b = &strings.Builder{}
		b.Grow(len(cur) + len(*u.Append))
		b.WriteString(cur)
		fields[u.Field] = b
	}
	b.WriteString(*u.Append)
	a.Fields[u.Field] = b.String()
	a.Rev = rev
	return true
}

// Dropped returns the artifacts the last snapshot_complete dropped, by
// seq: held before a full replay that did not send them (only those it
// holds: NewTranscriptOf). Empty unless the session's history went back.
func (t *Transcript) Dropped() []*protocol.Artifact { return t.dropped }

// Get returns the artifact at seq, or nil.
func (t *Transcript) Get(seq int64) *protocol.Artifact { return t.bySeq[seq] }

// Artifacts returns every artifact ordered by seq.
func (t *Transcript) Artifacts() []*protocol.Artifact {
	out := make([]*protocol.Artifact, 0, len(t.bySeq))
	for _, a := range t.bySeq {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}
