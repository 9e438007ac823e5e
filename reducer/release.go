package reducer

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/rein-ai/rein/protocol"
)

// A state need not hold every artifact's body. Once an artifact is closed
// (a finished block or tool, an answered permission, a completed turn, a
// message or notice) and its body is stored, Release drops it: the state
// keeps the artifact's key (so ids resolve and generated ids never clash)
// and its position, which is all folding the next event needs, and memory
// no longer grows with the text of a session. The rare later event that
// changes a closed artifact (a late tool_call_end, a text_end naming a
// finished block) names it first: Needs returns the seqs whose stored
// bodies Restore must hand back before Apply. The reducer thus stays pure
// and does no I/O; the changes and revisions are exactly those of a state
// that kept everything.

// Release drops the bodies of the artifacts that are closed, keeping those
// of the open turn, the newest turn (usage_updated lands there) and the
// newest plan (id-less plan updates replace it). A released body must be
// stored as the state had it (every change since its last Artifact copy
// written): Restore gets it back.
func (s *State) Release() { s.ReleaseThrough(math.MaxInt64) }

// ReleaseThrough is Release for the closed artifacts whose revision is
// rev or below; those changed after rev stay held. A fold of a log whose
// stored artifacts are those of revision rev (a session whose artifacts
// lag its log) releases what the store has as the state has it, and
// keeps what it must write.
func (s *State) ReleaseThrough(rev int64) {
	kept := s.held[:0]
	for _, seq := range s.held {
		n := s.nodes[seq-1]
		if n == nil {
			continue // a seq held twice (restored again): already released
		}
		if n.open || seq == s.turn || seq == s.lastTurn || seq == s.plan || n.a.Rev > rev {
			kept = append(kept, seq)
			continue
		}
		s.nodes[seq-1] = nil
		s.heldSize -= n.size
		s.released++
	}
	clear(s.held[len(kept):])
	s.held = kept
}

// Newest returns the seq of the newest artifact of type t with that id, 0
// when there is none; its body may be released.
func (s *State) Newest(t protocol.ArtifactType, id string) int64 { return s.byKey[key(t, id)] }

// Held reports whether the state holds the body of the artifact at seq.
func (s *State) Held(seq int64) bool { return s.node(seq) != nil }

// Needs returns the seqs of released artifacts whose bodies Apply(ev) will
// read or change, in ascending order: Restore each, then ask again (a
// restored permission may name a released tool), until it returns none.
// It is empty when nothing was released.
func (s *State) Needs(ev protocol.Event) []int64 {
	if s.released == 0 {
		return nil
	}
	var out []int64
	need := func(t protocol.ArtifactType, id string) {
		if seq := s.find(t, id); seq != 0 && s.nodes[seq-1] == nil && !slices.Contains(out, seq) {
			out = append(out, seq)
		}
	}
	switch ev.Type {
	case protocol.EventTextDelta, protocol.EventTextEnd:
		if ev.ID != "" {
			need(protocol.ArtifactAssistantText, ev.ID)
		}
	case protocol.EventReasoningDelta, protocol.EventReasoningEnd:
		if ev.ID != "" {
			need(protocol.ArtifactReasoning, ev.ID)
		}
	case protocol.EventToolCallStart, protocol.EventToolInputDelta, protocol.EventToolCallUpdate,
		protocol.EventToolOutputDelta, protocol.EventToolCallEnd:
		need(protocol.ArtifactToolCall, ev.ID)
	case protocol.EventPlanUpdated:
		if ev.ID != "" {
			need(protocol.ArtifactPlan, ev.ID)
		}
	case protocol.EventPermissionRequested:
		// The permission is only checked for being open, which a released
		// one is not; the tool's status is read and may change.
		if ev.ToolCallID != "" {
			need(protocol.ArtifactToolCall, ev.ToolCallID)
		}
	case protocol.EventPermissionResolved:
		// Only an open permission is resolved, and open ones are held;
		// the tool it names may be released.
		if seq := s.find(protocol.ArtifactPermission, ev.ID); seq != 0 && s.open[seq] {
			if tc := getString(s.nodes[seq-1], "toolCallId"); tc != "" {
				need(protocol.ArtifactToolCall, tc)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Restore hands back the stored body of a released artifact: its JSON as
// Artifact gave it, with every later change in it (as the store returns
// it). Restoring a held artifact is a no-op.
func (s *State) Restore(body []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return fmt.Errorf("restore artifact: %w", err)
	}
	var fixed struct {
		Seq       int64                 `json:"seq"`
		ID        string                `json:"id"`
		Type      protocol.ArtifactType `json:"type"`
		TurnID    string                `json:"turnId"`
		CreatedAt int64                 `json:"createdAt"`
		Rev       int64                 `json:"rev"`
	}
	if err := json.Unmarshal(body, &fixed); err != nil {
		return fmt.Errorf("restore artifact: %w", err)
	}
	if fixed.Seq < 1 || fixed.Seq > int64(len(s.nodes)) {
		return fmt.Errorf("restore artifact: seq %d is not one of the state's 1..%d", fixed.Seq, len(s.nodes))
	}
	if s.nodes[fixed.Seq-1] != nil {
		return nil
	}
	n := &node{a: protocol.Artifact{
		Seq: fixed.Seq, ID: fixed.ID, Type: fixed.Type, TurnID: fixed.TurnID, CreatedAt: fixed.CreatedAt, Rev: fixed.Rev,
		Fields: make(map[string]any, len(fields)),
	}}
	for k, raw := range fields {
		switch k {
		case "seq", "id", "type", "turnId", "createdAt", "rev":
			continue
		}
		if isAppendable(n.a.Type, k) && len(raw) > 0 && raw[0] == '"' {
			// Streamed text lives in a buffer, as create puts it.
			var str string
			if err := json.Unmarshal(raw, &str); err != nil {
				return fmt.Errorf("restore artifact seq=%d field %q: %w", n.a.Seq, k, err)
			}
			if n.bufs == nil {
				n.bufs = map[string]*text{}
			}
			n.bufs[k] = newText(str)
			continue
		}
		// The stored value is the reducer's own canonical encoding (see
		// mustJSON), so comparing it with a new value works as before.
		n.a.Fields[k] = raw
	}
	switch n.a.Type {
	case protocol.ArtifactTurn:
		if raw, ok := fields["usage"]; ok {
			if err := json.Unmarshal(raw, &n.usage); err != nil {
				return fmt.Errorf("restore artifact seq=%d usage: %w", n.a.Seq, err)
			}
		}
	case protocol.ArtifactPermission:
		if raw, ok := fields["options"]; ok {
			if err := json.Unmarshal(raw, &n.options); err != nil {
				return fmt.Errorf("restore artifact seq=%d options: %w", n.a.Seq, err)
			}
		}
	}
	n.size = n.heldBytes()
	s.nodes[n.a.Seq-1] = n
	s.held = append(s.held, n.a.Seq)
	s.heldSize += n.size
	s.released--
	return nil
}

// Parts of Size's estimate, measured as heap per folded state (see the
// server's TestStateSizeEstimate): the state's own maps and slices; each
// artifact's slot and key; each held artifact's node, field map and
// fields.
const (
	stateBytes     = 1 << 10
	seqBytes       = 10
	keyBytes       = 28
	heldNodeBytes  = 400
	heldFieldBytes = 48
	// chunkHeaderBytes: a text's struct and each of its chunks' slice
	// header (see text).
	chunkHeaderBytes = 24
)

// Size estimates the heap the state holds, in bytes: a constant per
// artifact (its slot and key) and the bodies it holds. It costs nothing per
// artifact: the held bodies' part is kept as they change (heldSize).
func (s *State) Size() int64 {
	return stateBytes + int64(len(s.nodes))*seqBytes + int64(len(s.byKey))*keyBytes + s.keyBytes + s.heldSize
}

// heldBytes estimates the heap a held node takes: the node, its ids, and
// each field, buffer and usage entry.
func (n *node) heldBytes() int64 {
	size := heldNodeBytes + int64(len(n.a.ID)+len(n.a.TurnID))
	for k, v := range n.a.Fields {
		size += heldFieldBytes + int64(len(k))
		if raw, ok := v.(json.RawMessage); ok {
			size += int64(cap(raw))
		}
	}
	for _, b := range n.bufs {
		size += heldFieldBytes + int64(b.size) + int64(1+len(b.chunks))*chunkHeaderBytes
	}
	for k, v := range n.usage {
		size += heldFieldBytes + int64(len(k)+cap(v))
	}
	return size
}
