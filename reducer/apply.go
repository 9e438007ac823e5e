package reducer

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/rein-ai/rein/protocol"
)

// Apply folds one event into s and returns s and the changes it made. s is
// updated in place (copying a session's state per event would make a long
// session quadratic); Apply is otherwise a pure function of s and ev.
func Apply(s *State, ev protocol.Event) (*State, []Change) {
	return s, s.Apply(ev)
}

// Fold applies every event of a log to a new state.
func Fold(events []protocol.Event) *State {
	s := New()
	for _, ev := range events {
		s.Apply(ev)
	}
	return s
}

// Apply folds one event into s and returns the changes it made.
//
// When bodies were released (see Release), every body Needs(ev) names must
// be restored first: Apply panics otherwise, since without them it could
// not make the changes a full state makes.
func (s *State) Apply(ev protocol.Event) []Change {
	if s.released > 0 {
		if need := s.Needs(ev); len(need) > 0 {
			panic(fmt.Sprintf("reducer: %s needs the released bodies of artifacts %v (call Needs and Restore first)", ev.Type, need))
		}
	}
	r := &run{s: s, at: ev.ReceivedAt}
	if r.at == 0 {
		r.at = ev.Ts
	}
	r.event(ev)
	for _, n := range r.touched {
		if s.node(n.a.Seq) == n {
			size := n.heldBytes()
			s.heldSize += size - n.size
			n.size = size
		}
	}
	return r.changes
}

// MaxNewArtifacts is the most artifacts Apply(ev) can create, in any
// state: a turn_started that interrupts an open turn adds its notice and
// the new turn; the events that only change what exists (a turn's end
// other than an interruption, which adds its notice, a permission's
// resolution, usage, session info, the agent's start, a heartbeat) add
// none; any other event adds at most one artifact. The server counts it
// against a session's artifact cap before it applies a batch: counting
// one for an event that adds none refused a turn's end at the last
// artifact of the cap's reserve, and left the turn running.
func MaxNewArtifacts(ev protocol.Event) int {
	switch ev.Type {
	case protocol.EventTurnStarted:
		return 2
	case protocol.EventTurnCompleted:
		if ev.StopReason == protocol.StopInterrupted {
			return 1
		}
		return 0
	case protocol.EventPermissionResolved, protocol.EventUsageUpdated, protocol.EventSessionInfo,
		protocol.EventAgentStarted, protocol.EventHeartbeat:
		return 0
	}
	return 1
}

// run collects the changes of one event.
type run struct {
	s       *State
	at      int64
	changes []Change
	// touched are the nodes the event created or changed, whose size
	// Apply counts again at the end (a node may be listed twice).
	touched []*node
}

// touch lists n as changed by this event (see run.touched).
func (r *run) touch(n *node) {
	if k := len(r.touched); k == 0 || r.touched[k-1] != n {
		r.touched = append(r.touched, n)
	}
}

func (r *run) event(ev protocol.Event) {
	s := r.s
	switch ev.Type {
	case protocol.EventAgentStarted:
		if s.turn != 0 {
			r.status(protocol.StatusLive)
		} else {
			r.status(protocol.StatusIdle)
		}
	case protocol.EventAgentExited:
		r.agentExited(ev)
	case protocol.EventTurnStarted:
		r.turnStarted(ev)
	case protocol.EventUserMessage:
		id := ev.ID
		if id == "" {
			id = s.genID(protocol.ArtifactUserMessage, "user")
		}
		r.detachBlocks()
		r.create(protocol.ArtifactUserMessage, id, false, fields{"text": ev.Text, "promptId": opt(ev.PromptID)})
		if s.summary == "" && !s.summaryFromAgent {
			if sum := protocol.Summarize(ev.Text); sum != "" {
				r.summary(sum)
			}
		}
	case protocol.EventTextDelta:
		r.blockDelta(protocol.ArtifactAssistantText, "text", &s.openText, ev.ID, ev.Delta)
	case protocol.EventReasoningDelta:
		r.blockDelta(protocol.ArtifactReasoning, "reasoning", &s.openReasoning, ev.ID, ev.Delta)
	case protocol.EventTextEnd:
		r.blockEnd(protocol.ArtifactAssistantText, "text", &s.openText, ev.ID, ev.Text, false)
	case protocol.EventReasoningEnd:
		r.blockEnd(protocol.ArtifactReasoning, "reasoning", &s.openReasoning, ev.ID, ev.Text, ev.Redacted)
	case protocol.EventToolCallStart:
		r.toolStart(ev)
	case protocol.EventToolInputDelta:
		n := r.tool(ev.ID)
		r.appendField(n, fieldInputText, ev.Delta)
	case protocol.EventToolCallUpdate:
		r.toolUpdate(ev)
	case protocol.EventToolOutputDelta:
		n := r.tool(ev.ID)
		if st := toolStatus(n); st == protocol.ToolPending || st == protocol.ToolAwaitingApproval {
			r.set(n, "status", protocol.ToolRunning)
		}
		r.appendField(n, fieldOutput, ev.Delta)
	case protocol.EventToolCallEnd:
		r.toolEnd(ev)
	case protocol.EventPlanUpdated:
		r.plan(ev)
	case protocol.EventPermissionRequested:
		r.permissionRequested(ev)
	case protocol.EventPermissionResolved:
		r.permissionResolved(ev)
	case protocol.EventFileChanged:
		r.detachBlocks()
		r.create(protocol.ArtifactFileChange, s.genID(protocol.ArtifactFileChange, "file"), false, fields{
			"path": ev.Path, "change": ev.Change, "diff": opt(ev.Diff), "toolCallId": opt(ev.ToolCallID),
		})
	case protocol.EventUsageUpdated:
		r.usage(ev)
	case protocol.EventSessionInfo:
		sum := ev.Summary
		if sum == "" {
			sum = ev.Title
		}
		if sum != "" {
			s.summaryFromAgent = true
			if sum != s.summary {
				r.summary(sum)
			}
		}
	case protocol.EventNotice:
		// A notice does not end id-less routing: agentd posts its own
		// (a full disk, a line the agent wrote that it could not read)
		// in the middle of the agent's blocks, and the agent, which
		// never saw it, goes on with the same block and may end it with
		// its whole text. Splitting the block there would show what
		// streamed before the notice twice.
		r.create(protocol.ArtifactNotice, s.genID(protocol.ArtifactNotice, "notice"), false, fields{
			"level": ev.Level, "message": ev.Message, "code": opt(ev.NoticeCode),
		})
	case protocol.EventTurnCompleted:
		r.turnCompleted(ev)
	}
}

// fields are the set fields of a new artifact; nil values are left out.
type fields map[string]any

// opt leaves an empty string out of an artifact.
func opt(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (r *run) nextRev() int64 {
	r.s.rev++
	return r.s.rev
}

// create adds an artifact in the current turn.
func (r *run) create(t protocol.ArtifactType, id string, open bool, f fields) *node {
	s := r.s
	rev := r.nextRev()
	n := &node{
		a: protocol.Artifact{
			Seq: int64(len(s.nodes) + 1), ID: id, Type: t, CreatedAt: r.at, Rev: rev,
			Fields: make(map[string]any, len(f)),
		},
	}
	if t == protocol.ArtifactTurn {
		n.a.TurnID = id
	} else if tn := s.node(s.turn); tn != nil {
		n.a.TurnID = tn.a.ID
	}
	for k, v := range f {
		if v == nil {
			continue
		}
		if str, ok := v.(string); ok && isAppendable(t, k) {
			if n.bufs == nil {
				n.bufs = map[string]*text{}
			}
			n.bufs[k] = newText(str)
			continue
		}
		n.a.Fields[k] = mustJSON(v)
	}
	s.nodes = append(s.nodes, n)
	s.held = append(s.held, n.a.Seq)
	r.touch(n)
	s.setOpen(n, open)
	k := key(t, id)
	if _, ok := s.byKey[k]; !ok {
		s.keyBytes += int64(len(k))
	}
	s.byKey[k] = n.a.Seq
	r.changes = append(r.changes, Change{Kind: Created, Rev: rev, Seq: n.a.Seq, Artifact: n.snapshot()})
	return n
}

// isAppendable says which fields of which type are streamed: the wire
// contract's protocol.Appendable.
func isAppendable(t protocol.ArtifactType, f string) bool { return protocol.Appendable(t, f) }

func (r *run) appendField(n *node, f, delta string) {
	if delta == "" {
		return
	}
	if n.bufs == nil {
		n.bufs = map[string]*text{}
	}
	if b := n.bufs[f]; b != nil {
		b.append(delta)
	} else {
		n.bufs[f] = newText(delta)
	}
	r.touch(n)
	rev := r.nextRev()
	n.a.Rev = rev
	r.changes = append(r.changes, Change{Kind: Appended, Rev: rev, Seq: n.a.Seq, Field: f, Append: delta})
}

// set replaces a field; setting a field to the value it has is no change.
func (r *run) set(n *node, f string, v any) {
	raw := mustJSON(v)
	if isAppendable(n.a.Type, f) {
		str, _ := v.(string)
		if b, ok := n.bufs[f]; ok && b.equal(str) {
			return
		}
		if n.bufs == nil {
			n.bufs = map[string]*text{}
		}
		n.bufs[f] = newText(str)
	} else {
		if old, ok := n.a.Fields[f].(json.RawMessage); ok && bytes.Equal(old, raw) {
			return
		}
		n.a.Fields[f] = raw
	}
	r.touch(n)
	rev := r.nextRev()
	n.a.Rev = rev
	r.changes = append(r.changes, Change{Kind: Set, Rev: rev, Seq: n.a.Seq, Field: f, Set: raw})
}

func (r *run) status(st protocol.SessionStatus) {
	r.s.status = st
	r.changes = append(r.changes, Change{Kind: StatusChanged, Status: st})
}

func (r *run) summary(sum string) {
	r.s.summary = sum
	r.changes = append(r.changes, Change{Kind: SummaryChanged, Summary: sum})
}

// mustJSON encodes a value for an artifact field in canonical form: object
// keys sorted at every depth, as any client gets by decoding and re-encoding
// it. Stored artifacts then equal a client's model byte for byte. The values
// come from decoded JSON, so encoding cannot fail; a failure is a reducer bug
// and panics loudly in tests.
func mustJSON(v any) json.RawMessage {
	b, ok := v.(json.RawMessage)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			panic(fmt.Sprintf("reducer: encode %T: %v", v, err))
		}
	}
	if len(b) == 0 || (b[0] != '{' && b[0] != '[') {
		// Marshalling a RawMessage compacts it and escapes it as
		// json.Marshal escapes strings: the very bytes a stored artifact
		// holds, so a body restored from the store (see Restore) compares
		// equal to the value the state had.
		out, err := json.Marshal(json.RawMessage(b))
		if err != nil {
			panic(fmt.Sprintf("reducer: compact %T: %v", v, err))
		}
		return out
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // keep numbers exactly as sent
	var tree any
	if err := dec.Decode(&tree); err != nil {
		panic(fmt.Sprintf("reducer: canonicalize %T: %v", v, err))
	}
	out, err := json.Marshal(tree)
	if err != nil {
		panic(fmt.Sprintf("reducer: canonicalize %T: %v", v, err))
	}
	return out
}

func getString(n *node, f string) string {
	raw, ok := n.a.Fields[f].(json.RawMessage)
	if !ok {
		return ""
	}
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

func toolStatus(n *node) protocol.ToolStatus { return protocol.ToolStatus(getString(n, "status")) }
