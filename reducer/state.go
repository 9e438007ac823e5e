package reducer

import (
	"encoding/json"
	"strconv"

	"github.com/rein-ai/rein/protocol"
)

// Appendable fields: streamed text kept in growable buffers so that a long
// stream of deltas costs O(total) rather than O(n²) string copies.
// Which fields append is protocol.Appendable.
const (
	fieldText      = protocol.FieldText
	fieldInputText = protocol.FieldInputText
	fieldOutput    = protocol.FieldOutput
)

// node is the reducer's view of one artifact.
type node struct {
	a protocol.Artifact // fixed keys and set fields (values are json.RawMessage)
	// bufs holds the appendable fields.
	bufs map[string][]byte
	// turn is the seq of the turn this artifact belongs to (0 for none).
	turn int64
	// open: a text/reasoning block still streaming, a tool not finished, a
	// permission not answered, a turn not completed. turn_completed closes
	// every open artifact.
	open bool
	// options of a permission, to tell approve from deny by option kind.
	options []protocol.PermissionOption
	// usage of a turn, merged field by field.
	usage map[string]json.RawMessage
}

// State is a session's reduced state. The zero value is not usable; call New.
type State struct {
	rev   int64
	nodes []*node // nodes[seq-1]
	// byKey maps "type/id" to the seq of the newest artifact with that id.
	byKey map[string]int64
	// turn is the seq of the open turn, 0 when none is open.
	turn int64
	// lastTurn is the seq of the newest turn, open or not (usage lands there).
	lastTurn int64
	// openText and openReasoning are the blocks id-less deltas go to.
	openText, openReasoning int64
	// plan is the seq of the newest plan (id-less plan updates replace it).
	plan    int64
	gen     map[string]int
	status  protocol.SessionStatus
	summary string
	// summaryFromAgent: session_info set the summary; user messages no
	// longer may, and later session_info still can.
	summaryFromAgent bool
}

// New returns an empty state.
func New() *State {
	return &State{byKey: map[string]int64{}, gen: map[string]int{}}
}

// Rev is the revision of the latest artifact change (0 before any).
func (s *State) Rev() int64 { return s.rev }

// Len is the number of artifacts.
func (s *State) Len() int { return len(s.nodes) }

// Status is the session status implied by the events so far ("" before any
// event implies one). The stored status also depends on the sandbox
// connection, which only the server knows.
func (s *State) Status() protocol.SessionStatus { return s.status }

// Summary is the session summary derived so far ("" when none).
func (s *State) Summary() string { return s.summary }

// TurnOpen reports whether a turn has started and not completed.
func (s *State) TurnOpen() bool { return s.turn != 0 }

// Artifact returns a copy of the artifact at seq, or nil.
func (s *State) Artifact(seq int64) *protocol.Artifact {
	if seq < 1 || seq > int64(len(s.nodes)) {
		return nil
	}
	return s.nodes[seq-1].snapshot()
}

// Artifacts returns copies of every artifact, ordered by seq.
func (s *State) Artifacts() []*protocol.Artifact {
	out := make([]*protocol.Artifact, len(s.nodes))
	for i, n := range s.nodes {
		out[i] = n.snapshot()
	}
	return out
}

// snapshot copies the artifact with its appendable fields as strings.
func (n *node) snapshot() *protocol.Artifact {
	a := n.a.Clone()
	for f, b := range n.bufs {
		a.Fields[f] = string(b)
	}
	return a
}

func (s *State) node(seq int64) *node {
	if seq < 1 || seq > int64(len(s.nodes)) {
		return nil
	}
	return s.nodes[seq-1]
}

func key(t protocol.ArtifactType, id string) string { return string(t) + "/" + id }

// genID returns the next deterministic id for prefix: "text-1", "text-2"...
// It skips ids an agent already used, so generated and given ids never meet.
func (s *State) genID(t protocol.ArtifactType, prefix string) string {
	for {
		s.gen[prefix]++
		id := prefix + "-" + strconv.Itoa(s.gen[prefix])
		if _, used := s.byKey[key(t, id)]; !used {
			return id
		}
	}
}

// lookup finds the artifact an id refers to in the current context. An id
// used in an earlier, closed turn refers to nothing now: agents that restart
// (and reuse "t1", "m1"...) get new artifacts rather than writing into old ones.
func (s *State) lookup(t protocol.ArtifactType, id string) *node {
	seq, ok := s.byKey[key(t, id)]
	if !ok {
		return nil
	}
	n := s.nodes[seq-1]
	if t != protocol.ArtifactTurn && s.turn != 0 && n.turn != s.turn && !n.open {
		return nil
	}
	return n
}
