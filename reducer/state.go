package reducer

import (
	"encoding/json"
	"fmt"
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
	// bufs holds the appendable fields (see text).
	bufs map[string]*text
	// open: a text/reasoning block still streaming, a tool not finished, a
	// permission not answered, a turn not completed. turn_completed closes
	// every open artifact.
	open bool
	// options of a permission, to tell approve from deny by option kind.
	options []protocol.PermissionOption
	// usage of a turn, merged field by field.
	usage map[string]json.RawMessage
	// size is what this node adds to State.heldSize: heldBytes when it
	// was last held or changed.
	size int64
}

// State is a session's reduced state. The zero value is not usable; call New.
type State struct {
	rev int64
	// nodes[seq-1] is the artifact at seq, nil when its body was released
	// (see Release): a released artifact is closed and its body is in the
	// store.
	nodes []*node
	// held lists the seqs whose node is held, among them every open one:
	// Release looks at these only, so it costs what is held, not the
	// session's length.
	held []int64
	// heldSize is the sum of the held nodes' size, kept as they change
	// (run.touch), so that Size costs nothing per artifact: the server
	// asks after every commit, and an agent that leaves blocks open
	// holds thousands.
	heldSize int64
	// open is the set of open artifacts (closeOpen closes them in seq order).
	open map[int64]bool
	// byKey maps "type/id" to the seq of the newest artifact with that id.
	byKey map[string]int64
	// keyBytes is the length of byKey's keys (Size).
	keyBytes int64
	// released counts the artifacts whose bodies were released.
	released int
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
	return &State{byKey: map[string]int64{}, gen: map[string]int{}, open: map[int64]bool{}}
}

// Rev is the revision of the latest artifact change (0 before any).
func (s *State) Rev() int64 { return s.rev }

// SkipTo makes the next change's revision at least rev+1. A fold of a log
// can end below the revision its session already had (a build whose
// rules make fewer changes of the same events): clients hold revisions up
// to that one, and a change numbered at or below it would look to them
// like one they have. The artifacts keep their revisions.
func (s *State) SkipTo(rev int64) {
	s.rev = max(s.rev, rev)
}

// SkipSeqTo makes the next artifact's seq at least seq+1. A fold of a log
// can end with fewer artifacts than its session already stored (a build
// whose rules made more artifacts of the same events: before 43f7d0a a
// notice split an id-less text block in two): the next artifact created
// would take a stored one's seq and be written over it, losing it from
// the transcript and replacing it in clients that hold it. The seqs
// skipped count as released artifacts (see Release): stored, closed, and
// named by no id the state resolves, so no event reads or changes them.
func (s *State) SkipSeqTo(seq int64) {
	for int64(len(s.nodes)) < seq {
		s.nodes = append(s.nodes, nil)
		s.released++
	}
}

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

// Open reports whether anything is open: a turn, or a block, tool call or
// permission request nothing has ended yet (one outside any turn too).
func (s *State) Open() bool { return len(s.open) > 0 }

// Artifact returns a copy of the artifact at seq, or nil when there is
// none or its body was released (see Release). An artifact an event just
// changed is held until the next Release.
func (s *State) Artifact(seq int64) *protocol.Artifact {
	if n := s.node(seq); n != nil {
		return n.snapshot()
	}
	return nil
}

// ArtifactJSON returns the JSON of the artifact at seq (Artifact's
// MarshalJSON) and its revision; nil when there is none or its body was
// released. It encodes the held text as it is, without Artifact's copy of
// it: for a tool output of many MiB that copy was as big as the body.
func (s *State) ArtifactJSON(seq int64) (body []byte, rev int64, err error) {
	n := s.node(seq)
	if n == nil {
		return nil, 0, nil
	}
	body, err = n.a.MarshalJSONChunks(n.chunks())
	return body, n.a.Rev, err
}

// ArtifactJSONTrimmed is ArtifactJSON with the last trim[f] bytes of each
// streamed field f left out: the artifact as it was before that text was
// appended, but for every other field, which is as it is now. The server
// writes it over a stored body whose appends it keeps (a big tool output
// closing), so that the text those appends hold is not written again.
// A trim that names a field the artifact does not stream, or more bytes
// than it holds, is an error.
func (s *State) ArtifactJSONTrimmed(seq int64, trim map[string]int) (body []byte, rev int64, err error) {
	n := s.node(seq)
	if n == nil {
		return nil, 0, nil
	}
	texts := n.chunks()
	for f, cut := range trim {
		b, ok := n.bufs[f]
		held := 0
		if ok {
			held = b.n
		}
		if cut > held || cut < 0 {
			return nil, 0, fmt.Errorf("trim artifact seq=%d field %q by %d bytes: it holds %d", seq, f, cut, held)
		}
		if ok {
			texts[f] = b.trimmed(cut)
		}
	}
	body, err = n.a.MarshalJSONChunks(texts)
	return body, n.a.Rev, err
}

// StreamedText returns the streamed fields of the artifact at seq (a
// tool's output and input, a block's text) in the state's chunks, which
// share its memory and must not be changed; nil when there is none or
// its body was released. The server writes a big one to the store as
// appends rather than one body.
func (s *State) StreamedText(seq int64) map[string][][]byte {
	n := s.node(seq)
	if n == nil {
		return nil
	}
	return n.chunks()
}

// ArtifactHead returns a copy of the artifact at seq without its streamed
// text (the fields the state holds as appended bytes: a tool's output and
// input, a block's text), or nil as Artifact does. It is for reading what
// an artifact is (a tool call's name, kind, title and status) without
// copying an output of many MiB.
func (s *State) ArtifactHead(seq int64) *protocol.Artifact {
	n := s.node(seq)
	if n == nil {
		return nil
	}
	a := n.a.Clone()
	for f := range n.bufs {
		delete(a.Fields, f)
	}
	return a
}

// ArtifactHeads is Artifacts without the streamed text (ArtifactHead of
// every seq): what every artifact is, for a reader that needs no output.
func (s *State) ArtifactHeads() []*protocol.Artifact {
	out := make([]*protocol.Artifact, len(s.nodes))
	for i := range out {
		out[i] = s.ArtifactHead(int64(i) + 1)
	}
	return out
}

// Artifacts returns copies of every artifact, ordered by seq; nil for
// those whose bodies were released.
func (s *State) Artifacts() []*protocol.Artifact {
	out := make([]*protocol.Artifact, len(s.nodes))
	for i, n := range s.nodes {
		if n != nil {
			out[i] = n.snapshot()
		}
	}
	return out
}

// snapshot copies the artifact with its appendable fields as strings.
func (n *node) snapshot() *protocol.Artifact {
	a := n.a.Clone()
	for f, b := range n.bufs {
		a.Fields[f] = b.String()
	}
	return a
}

// chunks returns the appendable fields' chunks, sharing their memory.
func (n *node) chunks() map[string][][]byte {
	out := make(map[string][][]byte, len(n.bufs))
	for f, b := range n.bufs {
		out[f] = b.chunks
	}
	return out
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

// find returns the seq of the artifact an id refers to in the current
// context, 0 for none. An id used in an earlier, closed turn refers to
// nothing now: agents that restart (and reuse "t1", "m1"...) get new
// artifacts rather than writing into old ones. It needs no body: an
// artifact is in the open turn exactly when it was created after the
// turn's own artifact (the open turn is the newest one), and a released
// artifact is closed.
func (s *State) find(t protocol.ArtifactType, id string) int64 {
	seq, ok := s.byKey[key(t, id)]
	if !ok {
		return 0
	}
	if t != protocol.ArtifactTurn && s.turn != 0 && seq < s.turn && !s.open[seq] {
		return 0
	}
	return seq
}

// lookup returns the node of the artifact an id refers to (see find), or
// nil. Its body must be held: Needs names the bodies an event will look
// up, and Apply refuses an event before they are restored.
func (s *State) lookup(t protocol.ArtifactType, id string) *node {
	seq := s.find(t, id)
	if seq == 0 {
		return nil
	}
	return s.nodes[seq-1]
}

// setOpen marks n open or closed.
func (s *State) setOpen(n *node, open bool) {
	n.open = open
	if open {
		s.open[n.a.Seq] = true
	} else {
		delete(s.open, n.a.Seq)
	}
}
