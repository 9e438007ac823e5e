package reducer

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/rein-ai/rein/protocol"
)

// Block, turn and permission statuses on artifacts: protocol's enums, as
// the plain strings the fields map holds.
const (
	blockStreaming   = string(protocol.BlockStreaming)
	blockDone        = string(protocol.BlockDone)
	blockInterrupted = string(protocol.BlockInterrupted)

	turnRunning     = string(protocol.TurnRunning)
	turnCompleted   = string(protocol.TurnCompleted)
	turnCancelled   = string(protocol.TurnCancelled)
	turnFailed      = string(protocol.TurnFailed)
	turnInterrupted = string(protocol.TurnInterrupted)

	permPending   = string(protocol.PermissionPending)
	permApproved  = string(protocol.PermissionApproved)
	permDenied    = string(protocol.PermissionDenied)
	permCancelled = string(protocol.PermissionCancelled)
)

func (r *run) turnStarted(ev protocol.Event) {
	s := r.s
	if cur := s.node(s.turn); cur != nil {
		if cur.a.ID == ev.TurnID {
			return // a repeated turn_started (a retry, or agentd after a reconnect)
		}
		// A new turn without the old one completed: the old one is over,
		// but the agent never said it ended it, so it did not end_turn.
		r.interrupted(cur, "a new turn started before it completed")
	}
	r.detachBlocks()
	f := fields{"status": turnRunning, "source": ev.Source, "startedAt": r.at, "promptId": opt(ev.PromptID)}
	if f["source"] == protocol.Source("") {
		f["source"] = protocol.SourceUser
	}
	s.turn = 0 // the turn belongs to itself, not to the previous one
	n := r.create(protocol.ArtifactTurn, ev.TurnID, true, f)
	s.turn, s.lastTurn = n.a.Seq, n.a.Seq
	r.status(protocol.StatusLive)
}

func (r *run) turnCompleted(ev protocol.Event) {
	s := r.s
	cur := s.node(s.turn)
	if cur == nil || (ev.TurnID != "" && cur.a.ID != ev.TurnID) {
		// No such open turn: a late or repeated completion. Still close any
		// open blocks and tools (bare seed-style events have no turn).
		if ev.TurnID == "" || cur == nil {
			r.closeOpen(ev.StopReason)
			r.status(protocol.StatusIdle)
		}
		return
	}
	if ev.StopReason == protocol.StopInterrupted {
		r.interrupted(cur, ev.Error)
	} else {
		r.closeTurn(cur, ev.StopReason, ev.Error, ev.ResultText)
	}
	r.status(protocol.StatusIdle)
}

// interrupted closes a turn nobody ended (agentd or its agent died mid-turn,
// or a new turn began) with a notice saying so: what it streamed may be
// cut short.
func (r *run) interrupted(t *node, why string) {
	msg := "turn " + t.a.ID + " was interrupted"
	if why != "" {
		msg += ": " + why
	}
	r.detachBlocks()
	r.create(protocol.ArtifactNotice, r.s.genID(protocol.ArtifactNotice, "notice"), false, fields{"level": protocol.LevelWarning, "message": msg, "code": "turn_interrupted"})
	r.closeTurn(t, protocol.StopInterrupted, why, "")
}

// closeTurn ends the turn and everything still open in it.
func (r *run) closeTurn(t *node, reason protocol.StopReason, errText, result string) {
	r.closeOpen(reason)
	st := turnCompleted
	switch reason {
	case protocol.StopCancelled:
		st = turnCancelled
	case protocol.StopError:
		st = turnFailed
	case protocol.StopInterrupted:
		st = turnInterrupted
	}
	r.set(t, "status", st)
	r.set(t, "stopReason", reason)
	if errText != "" {
		r.set(t, "error", errText)
	}
	if result != "" {
		r.set(t, "resultText", result)
	}
	r.set(t, "endedAt", r.at)
	r.s.setOpen(t, false)
	r.s.turn = 0
}

// closeOpen closes every open block, tool and permission, in seq order.
// A block still streaming when its turn ends in an error (the agent
// failed, or died: agentd ends its turn so, and agent_exited closes as
// that would) was cut short, as on a cancel or an interruption: only a
// turn the agent ended as it meant to finishes its blocks.
func (r *run) closeOpen(reason protocol.StopReason) {
	cancelled := reason == protocol.StopCancelled || reason == protocol.StopInterrupted
	cut := cancelled || reason == protocol.StopError
	open := make([]int64, 0, len(r.s.open))
	for seq := range r.s.open {
		open = append(open, seq)
	}
	slices.Sort(open)
	for _, seq := range open {
		n := r.s.nodes[seq-1]
		if n.a.Type == protocol.ArtifactTurn {
			continue
		}
		switch n.a.Type {
		case protocol.ArtifactAssistantText, protocol.ArtifactReasoning:
			if cut {
				r.set(n, "status", blockInterrupted)
			} else {
				r.set(n, "status", blockDone)
			}
		case protocol.ArtifactToolCall:
			if cancelled {
				r.set(n, "status", protocol.ToolCancelled)
			} else {
				r.set(n, "status", protocol.ToolFailed)
			}
		case protocol.ArtifactPermission:
			r.set(n, "status", permCancelled)
		}
		r.s.setOpen(n, false)
	}
	r.s.openText, r.s.openReasoning = 0, 0
}

func (r *run) agentExited(ev protocol.Event) {
	s := r.s
	msg := "agent exited"
	switch {
	case ev.Signal != "":
		msg += " (signal " + ev.Signal + ")"
	case ev.ExitStatus != nil:
		msg += fmt.Sprintf(" (code %d)", *ev.ExitStatus)
	}
	if ev.Error != "" {
		msg += ": " + ev.Error
	}
	level := protocol.LevelInfo
	if ev.Signal != "" || (ev.ExitStatus != nil && *ev.ExitStatus != 0) || ev.Error != "" {
		level = protocol.LevelError
	}
	r.detachBlocks()
	r.create(protocol.ArtifactNotice, s.genID(protocol.ArtifactNotice, "notice"), false, fields{"level": level, "message": msg, "code": "agent_exited"})
	// The process that ran the turn is gone: the turn cannot go on.
	if cur := s.node(s.turn); cur != nil {
		r.closeTurn(cur, protocol.StopError, msg, "")
	} else if len(s.open) > 0 {
		// No turn holds them (events after the turn ended, a session
		// without turns), but the process that would finish them is gone
		// all the same: nothing may go on saying it streams, runs or waits
		// for an answer.
		r.closeOpen(protocol.StopError)
	}
	// With or without a turn, no agent works on anything now. Without
	// one this used to imply nothing, and a session whose agent dies
	// before it reports itself (agentd posts agent_exited, and nothing
	// else, at each restart) stayed live, as opening the command stream
	// left it.
	r.status(protocol.StatusIdle)
}

// detachBlocks ends the id-less routing of deltas: text after a tool call
// (or any other artifact but a notice, see Apply) is a new block, shown
// after it. The detached block
// stays streaming until its *_end or turn_completed closes it.
func (r *run) detachBlocks() {
	s := r.s
	s.openText, s.openReasoning = 0, 0
}

// blockDelta appends to a text or reasoning block: the one named by id, or
// the open block of that kind; one is created when there is none.
func (r *run) blockDelta(t protocol.ArtifactType, prefix string, open *int64, id, delta string) {
	n := r.block(t, open, id)
	if n == nil {
		if id == "" {
			id = r.s.genID(t, prefix)
		}
		r.detachOther(t)
		n = r.create(t, id, true, fields{"text": delta, "status": blockStreaming})
		*open = n.a.Seq
		return
	}
	*open = n.a.Seq
	r.appendField(n, fieldText, delta)
}

// detachOther: text starting ends the open reasoning block's id-less
// routing and vice versa, so interleaved segments keep their order.
func (r *run) detachOther(t protocol.ArtifactType) {
	if t == protocol.ArtifactAssistantText {
		r.s.openReasoning = 0
	} else {
		r.s.openText = 0
	}
}

func (r *run) block(t protocol.ArtifactType, open *int64, id string) *node {
	if id != "" {
		return r.s.lookup(t, id)
	}
	if n := r.s.node(*open); n != nil && n.open {
		return n
	}
	return nil
}

// blockEnd ends a block; a final text that differs from what streamed
// replaces it, because the agent's final word is authoritative.
func (r *run) blockEnd(t protocol.ArtifactType, prefix string, open *int64, id, text string, redacted bool) {
	n := r.block(t, open, id)
	if n == nil {
		if text == "" && !redacted {
			return // nothing streamed and nothing to show
		}
		if id == "" {
			id = r.s.genID(t, prefix)
		}
		r.detachOther(t)
		f := fields{"text": text, "status": blockDone}
		if redacted {
			f["redacted"] = true
		}
		r.create(t, id, false, f)
		return
	}
	if text != "" {
		r.set(n, fieldText, text)
	}
	if redacted {
		r.set(n, "redacted", true)
	}
	r.set(n, "status", blockDone)
	r.s.setOpen(n, false)
	if *open == n.a.Seq {
		*open = 0
	}
}

// tool returns the tool call id names, creating it when unknown (a delta
// for an unknown id creates the artifact).
func (r *run) tool(id string) *node {
	if n := r.s.lookup(protocol.ArtifactToolCall, id); n != nil {
		return n
	}
	r.detachBlocks()
	return r.create(protocol.ArtifactToolCall, id, true, fields{"status": protocol.ToolPending})
}

func (r *run) toolStart(ev protocol.Event) {
	if n := r.s.lookup(protocol.ArtifactToolCall, ev.ID); n != nil {
		r.setIf(n, "name", ev.Name)
		r.setIf(n, "kind", ev.Kind)
		r.setIf(n, "title", ev.Title)
		if len(ev.Input) > 0 {
			r.set(n, "input", ev.Input)
		}
		return
	}
	r.detachBlocks()
	f := fields{"name": ev.Name, "kind": opt(ev.Kind), "title": opt(ev.Title), "status": protocol.ToolPending}
	if len(ev.Input) > 0 {
		f["input"] = ev.Input
	}
	r.create(protocol.ArtifactToolCall, ev.ID, true, f)
}

func (r *run) setIf(n *node, f, v string) {
	if v != "" {
		r.set(n, f, v)
	}
}

func (r *run) toolUpdate(ev protocol.Event) {
	n := r.tool(ev.ID)
	r.setIf(n, "name", ev.Name)
	r.setIf(n, "kind", ev.Kind)
	r.setIf(n, "title", ev.Title)
	// Fields in a fixed order, so that revisions are deterministic.
	if len(ev.Input) > 0 {
		r.set(n, "input", ev.Input)
	}
	if len(ev.Locations) > 0 {
		r.set(n, "locations", ev.Locations)
	}
	if len(ev.Content) > 0 {
		r.set(n, "content", ev.Content)
	}
	// A status that is not final reopens a tool only while it can still
	// be under way: open, or of the open turn. A tool its turn's end
	// closed stays closed (nothing would end it again but the next
	// turn's end, which would then call it failed); a final status still
	// says how it really ended.
	if ev.Status != "" && (terminalTool(ev.Status) || n.open || r.s.inOpenTurn(n)) {
		r.set(n, "status", ev.Status)
		r.s.setOpen(n, !terminalTool(ev.Status))
	}
}

// inOpenTurn reports whether n was created in the open turn (see find).
func (s *State) inOpenTurn(n *node) bool { return s.turn != 0 && n.a.Seq > s.turn }

func terminalTool(st protocol.ToolStatus) bool {
	switch st {
	case protocol.ToolCompleted, protocol.ToolFailed, protocol.ToolCancelled, protocol.ToolDenied:
		return true
	}
	return false
}

func (r *run) toolEnd(ev protocol.Event) {
	n := r.tool(ev.ID)
	if ev.Output != "" {
		r.set(n, fieldOutput, ev.Output)
	}
	if len(ev.Result) > 0 {
		r.set(n, "result", ev.Result)
	}
	r.setIf(n, "error", ev.Error)
	if ev.ExitCode != nil {
		r.set(n, "exitCode", *ev.ExitCode)
	}
	r.set(n, "status", ev.Status)
	r.s.setOpen(n, false)
}

func (r *run) plan(ev protocol.Event) {
	s := r.s
	var n *node
	if ev.ID != "" {
		n = s.lookup(protocol.ArtifactPlan, ev.ID)
	} else {
		n = s.node(s.plan)
	}
	entries := ev.Entries
	if entries == nil {
		entries = []protocol.PlanEntry{}
	}
	if n == nil {
		id := ev.ID
		if id == "" {
			id = s.genID(protocol.ArtifactPlan, "plan")
		}
		r.detachBlocks()
		n = r.create(protocol.ArtifactPlan, id, false, fields{"entries": entries})
		s.plan = n.a.Seq
		return
	}
	s.plan = n.a.Seq
	r.set(n, "entries", entries)
}

func (r *run) permissionRequested(ev protocol.Event) {
	s := r.s
	if seq := s.find(protocol.ArtifactPermission, ev.ID); seq != 0 && s.open[seq] {
		return // repeated request
	}
	r.detachBlocks()
	f := fields{"toolCallId": opt(ev.ToolCallID), "title": ev.Title, "options": ev.Options, "status": permPending}
	if len(ev.Input) > 0 {
		f["input"] = ev.Input
	}
	n := r.create(protocol.ArtifactPermission, ev.ID, true, f)
	n.options = ev.Options
	if ev.ToolCallID != "" {
		if t := s.lookup(protocol.ArtifactToolCall, ev.ToolCallID); t != nil && !terminalTool(toolStatus(t)) {
			r.set(t, "status", protocol.ToolAwaitingApproval)
			s.setOpen(t, true)
		}
	}
}

func (r *run) permissionResolved(ev protocol.Event) {
	s := r.s
	seq := s.find(protocol.ArtifactPermission, ev.ID)
	if seq == 0 || !s.open[seq] {
		return // unknown or already resolved: nothing to show
	}
	n := s.nodes[seq-1]
	st := permCancelled
	if ev.Outcome == protocol.OutcomeSelected {
		st = permDenied // an option we cannot find approves nothing
		for _, o := range n.options {
			if o.ID == ev.OptionID && o.Kind.IsAllow() {
				st = permApproved
			}
		}
	}
	if ev.OptionID != "" {
		r.set(n, "optionId", ev.OptionID)
	}
	r.set(n, "status", st)
	s.setOpen(n, false)
	tcid := getString(n, "toolCallId")
	if tcid == "" {
		return
	}
	t := s.lookup(protocol.ArtifactToolCall, tcid)
	if t == nil || toolStatus(t) != protocol.ToolAwaitingApproval {
		return
	}
	switch st {
	case permApproved:
		r.set(t, "status", protocol.ToolRunning)
	case permDenied:
		r.set(t, "status", protocol.ToolDenied)
		s.setOpen(t, false)
	case permCancelled:
		r.set(t, "status", protocol.ToolCancelled)
		s.setOpen(t, false)
	}
}

// usage merges the reported fields into the newest turn's usage: a field an
// update leaves out keeps its earlier value.
func (r *run) usage(ev protocol.Event) {
	t := r.s.node(r.s.turn)
	if t == nil {
		t = r.s.node(r.s.lastTurn)
	}
	if t == nil {
		return // no turn to attribute it to
	}
	if t.usage == nil {
		t.usage = map[string]json.RawMessage{}
	}
	// The merge changes the map even when set finds the field unchanged
	// (a new value's capacity may differ).
	r.touch(t)
	put := func(k string, v any, present bool) {
		if present {
			t.usage[k] = mustJSON(v)
		}
	}
	put("inputTokens", deref(ev.InputTokens), ev.InputTokens != nil)
	put("outputTokens", deref(ev.OutputTokens), ev.OutputTokens != nil)
	put("cachedInputTokens", deref(ev.CachedInputTokens), ev.CachedInputTokens != nil)
	put("contextUsed", deref(ev.ContextUsed), ev.ContextUsed != nil)
	put("contextSize", deref(ev.ContextSize), ev.ContextSize != nil)
	if ev.CostUSD != nil {
		t.usage["costUsd"] = mustJSON(*ev.CostUSD)
	}
	r.set(t, "usage", t.usage)
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}
