package claude

import (
	"encoding/json"
	"log/slog"
	"math"
	"strconv"
	"strings"

	"github.com/rein-ai/rein/agentd/internal/notapplied"
	"github.com/rein-ai/rein/protocol"
)

// planTool is Claude Code's todo-list tool; its calls become plan_updated
// instead of tool calls.
const planTool = "TodoWrite"

// line is one message on the CLI's stdout. Fields whose shape differs
// between message types stay raw and are decoded by type.
type line struct {
	Type    string `json:"type"`
	Subtype string `json:"subtype"`
	UUID    string `json:"uuid"`

	// system/init
	SessionID string `json:"session_id"`
	Cwd       string `json:"cwd"`
	Model     string `json:"model"`
	Version   string `json:"claude_code_version"`

	// stream_event
	Event        json.RawMessage `json:"event"`
	APIMessageID string          `json:"api_message_id"`

	// assistant, user
	Message json.RawMessage `json:"message"`
	Aborted bool            `json:"aborted"`

	// control_request, control_cancel_request, control_response
	RequestID string          `json:"request_id"`
	Request   json.RawMessage `json:"request"`
	Response  json.RawMessage `json:"response"`

	// result
	IsError        bool            `json:"is_error"`
	Result         json.RawMessage `json:"result"`
	Errors         json.RawMessage `json:"errors"`
	StopReason     string          `json:"stop_reason"`
	TerminalReason string          `json:"terminal_reason"`
	TotalCostUSD   *float64        `json:"total_cost_usd"`
	Usage          *apiUsage       `json:"usage"`
	ModelUsage     map[string]struct {
		ContextWindow int64 `json:"contextWindow"`
	} `json:"modelUsage"`
}

type apiUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
}

// streamEvent is a raw Messages API stream event, as stream_event carries it.
type streamEvent struct {
	Type    string `json:"type"`
	Index   int    `json:"index"`
	Message *struct {
		ID string `json:"id"`
	} `json:"message"`
	ContentBlock *contentBlock `json:"content_block"`
	Delta        *struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		Thinking    string `json:"thinking"`
		PartialJSON string `json:"partial_json"`
	} `json:"delta"`
}

// apiMessage is an assistant or user message.
type apiMessage struct {
	ID      string          `json:"id"`
	Content json.RawMessage `json:"content"` // a string or blocks
}

type contentBlock struct {
	Type     string          `json:"type"`
	Text     string          `json:"text"`
	Thinking string          `json:"thinking"`
	ID       string          `json:"id"`
	Name     string          `json:"name"`
	Input    json.RawMessage `json:"input"`
	// tool_result
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   bool            `json:"is_error"`
}

// canUseTool is the body of a can_use_tool control request.
type canUseTool struct {
	Subtype     string            `json:"subtype"`
	ToolName    string            `json:"tool_name"`
	DisplayName string            `json:"display_name"`
	Input       json.RawMessage   `json:"input"`
	Description string            `json:"description"`
	Suggestions []json.RawMessage `json:"permission_suggestions"`
	ToolUseID   string            `json:"tool_use_id"`
}

// block is a content block of an API message, streamed or not.
type block struct {
	id    string // Rein id: a block id, or a tool call id for tool_use
	typ   string // text, thinking, redacted_thinking, tool_use, ...
	tool  string // tool name for tool_use
	ended bool
}

type toolState struct {
	plan   bool // a TodoWrite call: reported as plan_updated only
	denied bool // its permission request was rejected
	// cancelled: its permission request was dismissed (or withdrawn), so
	// the tool never ran; the error result Claude Code then reports is
	// not a failure.
	cancelled bool
}

type pendingPermission struct {
	id          string // Rein id
	requestID   string // the CLI's control request id
	input       json.RawMessage
	suggestions []json.RawMessage
	toolID      string
}

// translator maps the CLI's messages and Rein's commands to ReinEvents and
// CLI input. It does no I/O of its own: emit and write are the adapter's,
// so a transcript replays through it exactly.
type translator struct {
	cwd   string
	log   *slog.Logger
	emit  func(protocol.Event)
	write func([]byte)
	// session, when set, gets the CLI's session id from each init.
	session func(id string)

	info protocol.Event // the last agent_started reported

	turn        string // open turn id, "" between turns
	interrupted bool   // agentd sent an interrupt in this turn
	queue       []protocol.Command
	// closed: agentd is stopping and closes the CLI's input. The CLI
	// may still finish its turn, but a prompt queued behind it can no
	// longer reach it: started, its turn_started would count it as
	// taken and it would be lost, while left alone it goes to the
	// next agentd.
	closed bool

	msgBlocks map[string][]*block // per API message id, by content index
	tools     map[string]*toolState
	perms     map[string]*pendingPermission // by Rein id
	permN     int
	reqN      int
	lastCost  float64 // the CLI reports the session's total cost
}

func newTranslator(cwd string, log *slog.Logger, emit func(protocol.Event), write func([]byte)) *translator {
	return &translator{cwd: cwd, log: log, emit: emit, write: write, perms: map[string]*pendingPermission{}}
}

// start reports the agent before the CLI has said anything: Claude Code
// prints its init message only once it has a prompt.
func (t *translator) start() {
	t.info = protocol.Event{Type: protocol.EventAgentStarted, Agent: &protocol.AgentInfo{Name: AgentName, Protocol: Protocol}, Cwd: t.cwd}
	t.emit(t.info)
}

func (t *translator) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		t.log.Error("encode claude input", "err", err)
		return
	}
	t.write(append(b, '\n'))
}

// command handles prompt, abort, permission_response and shutdown (whose
// closing of the CLI's input is the adapter's).
func (t *translator) command(c protocol.Command) {
	switch c.Type {
	case protocol.CommandShutdown:
		t.closed = true
	case protocol.CommandPrompt:
		// Prompts are queued here rather than in the CLI, which may fold
		// a prompt sent mid-turn into the running turn.
		t.queue = append(t.queue, c)
		t.next()
	case protocol.CommandAbort:
		if t.turn == "" {
			return
		}
		t.interrupted = true
		for _, p := range t.perms {
			t.answerPermission(p, protocol.Command{Outcome: protocol.OutcomeCancelled}, true)
		}
		t.reqN++
		t.send(map[string]any{"type": "control_request", "request_id": "agentd-" + strconv.Itoa(t.reqN), "request": map[string]any{"subtype": "interrupt"}})
	case protocol.CommandPermissionResponse:
		p, ok := t.perms[c.RequestID]
		if !ok {
			// The CLI withdrew the request (control_cancel_request) as
			// the answer was handed over, or an abort ended it: the
			// transcript shows it ended, and says the answer did
			// nothing, as for every answer not applied.
			t.log.Warn("permission answer for no pending request; not applied", "id", c.ID, "requestId", c.RequestID)
			t.emit(notapplied.Notice(c, notapplied.Ended))
			return
		}
		t.answerPermission(p, c, false)
	}
}

// next starts the next queued prompt when no turn is open. Ids derive from
// the command id, unique in the session, so they survive agent restarts.
func (t *translator) next() {
	if t.turn != "" || len(t.queue) == 0 || t.closed {
		return
	}
	c := t.queue[0]
	t.queue = t.queue[1:]
	n := strconv.FormatInt(c.ID, 10)
	t.openTurn("turn-"+n, protocol.SourceUser, "prompt-"+n)
	t.emit(protocol.Event{Type: protocol.EventUserMessage, ID: "user-" + n, Text: c.Text, PromptID: "prompt-" + n})
	t.send(map[string]any{
		"type":               "user",
		"message":            map[string]any{"role": "user", "content": c.Text},
		"parent_tool_use_id": nil,
		"session_id":         "",
	})
}

func (t *translator) openTurn(id string, source protocol.Source, promptID string) {
	t.turn, t.interrupted = id, false
	t.msgBlocks, t.tools, t.permN = map[string][]*block{}, map[string]*toolState{}, 0
	t.emit(protocol.Event{Type: protocol.EventTurnStarted, TurnID: id, PromptID: promptID, Source: source})
}

// ensureTurn opens a turn for output that arrives between turns: Claude
// started one by itself (a background task finished, a scheduled wake-up).
func (t *translator) ensureTurn(l *line) {
	if t.turn != "" {
		return
	}
	id := protocol.SanitizeEventID(l.UUID, 64)
	if l.UUID == "" {
		t.reqN++
		id = strconv.Itoa(t.reqN)
	}
	t.openTurn("agent-"+id, protocol.SourceAgent, "")
}

// line handles one line of the CLI's stdout.
func (t *translator) line(raw []byte) {
	var l line
	if err := json.Unmarshal(raw, &l); err != nil {
		t.log.Warn("claude stdout line is not a message", "err", err)
		return
	}
	switch l.Type {
	case "system":
		if l.Subtype == "init" {
			if t.session != nil && l.SessionID != "" {
				t.session(l.SessionID)
			}
			t.initialized(&l)
		}
	case "stream_event":
		t.streamEvent(&l)
	case "assistant":
		t.assistant(&l)
	case "user":
		t.user(&l)
	case "result":
		t.result(&l)
	case "control_request":
		t.controlRequest(&l)
	case "control_cancel_request":
		for _, p := range t.perms {
			if p.requestID == l.RequestID {
				if ts := t.tools[p.toolID]; ts != nil {
					ts.cancelled = true
				}
				t.resolve(p, protocol.Event{Type: protocol.EventPermissionResolved, ID: p.id, Outcome: protocol.OutcomeCancelled})
			}
		}
	case "control_response":
		var r struct {
			Subtype string `json:"subtype"`
			Error   string `json:"error"`
		}
		if json.Unmarshal(l.Response, &r) == nil && r.Subtype == "error" {
			t.log.Warn("claude refused a control request", "err", r.Error)
		}
	default:
		t.log.Debug("ignoring claude message", "type", l.Type, "subtype", l.Subtype)
	}
}

// initialized reports the model, version and cwd from the init message
// (sent at the start of every turn) when they differ from what was told.
func (t *translator) initialized(l *line) {
	ev := protocol.Event{Type: protocol.EventAgentStarted, Agent: &protocol.AgentInfo{Name: AgentName, Version: l.Version, Protocol: Protocol}, Model: l.Model, Cwd: l.Cwd}
	if ev.Cwd == "" {
		ev.Cwd = t.cwd
	}
	if ev.Model == t.info.Model && ev.Cwd == t.info.Cwd && ev.Agent.Version == t.info.Agent.Version {
		return
	}
	t.info = ev
	t.emit(ev)
}

func (t *translator) blockID(msgID string, index int) string {
	return t.turn + ":" + protocol.SanitizeEventID(msgID, 64) + "-" + strconv.Itoa(index)
}

func (t *translator) toolID(toolUseID string) string {
	return t.turn + ":" + protocol.SanitizeEventID(toolUseID, 64)
}

func (t *translator) streamEvent(l *line) {
	var se streamEvent
	if err := json.Unmarshal(l.Event, &se); err != nil {
		t.log.Warn("claude stream_event", "err", err)
		return
	}
	switch se.Type {
	case "message_start":
		// Nothing to show yet; blocks open with content_block_start.
	case "content_block_start":
		cb := se.ContentBlock
		if cb == nil {
			return
		}
		t.ensureTurn(l)
		msgID := streamMessageID(l, &se)
		b := &block{typ: cb.Type, tool: cb.Name}
		if cb.Type == "tool_use" {
			b.id = t.toolID(cb.ID)
			if cb.Name == planTool {
				t.tools[b.id] = &toolState{plan: true}
			} else {
				t.tools[b.id] = &toolState{}
				t.emit(protocol.Event{Type: protocol.EventToolCallStart, ID: b.id, Name: cb.Name, Kind: toolKind(cb.Name)})
			}
		} else {
			b.id = t.blockID(msgID, se.Index)
		}
		t.setBlock(msgID, se.Index, b)
	case "content_block_delta":
		if se.Delta == nil {
			return
		}
		b := t.getBlock(streamMessageID(l, &se), se.Index)
		if b == nil || b.ended {
			return
		}
		switch se.Delta.Type {
		case "text_delta":
			t.emit(protocol.Event{Type: protocol.EventTextDelta, ID: b.id, Delta: se.Delta.Text})
		case "thinking_delta":
			t.emit(protocol.Event{Type: protocol.EventReasoningDelta, ID: b.id, Delta: se.Delta.Thinking})
		case "input_json_delta":
			if ts := t.tools[b.id]; ts != nil && !ts.plan {
				t.emit(protocol.Event{Type: protocol.EventToolInputDelta, ID: b.id, Delta: se.Delta.PartialJSON})
			}
		}
	}
}

// streamMessageID is the API message id a stream event belongs to.
func streamMessageID(l *line, se *streamEvent) string {
	if se.Message != nil && se.Message.ID != "" {
		return se.Message.ID
	}
	return l.APIMessageID
}

func (t *translator) setBlock(msgID string, index int, b *block) {
	bs := t.msgBlocks[msgID]
	for len(bs) <= index {
		bs = append(bs, nil)
	}
	bs[index] = b
	t.msgBlocks[msgID] = bs
}

func (t *translator) getBlock(msgID string, index int) *block {
	bs := t.msgBlocks[msgID]
	if index < 0 || index >= len(bs) {
		return nil
	}
	return bs[index]
}

// assistant handles a snapshot. Claude Code sends one per finished content
// block (carrying that block only) before the block's content_block_stop;
// its content is authoritative and ends the streamed block.
func (t *translator) assistant(l *line) {
	var m apiMessage
	if err := json.Unmarshal(l.Message, &m); err != nil {
		t.log.Warn("claude assistant message", "err", err)
		return
	}
	var content []contentBlock
	if err := json.Unmarshal(m.Content, &content); err != nil {
		t.log.Warn("claude assistant content", "err", err)
		return
	}
	t.ensureTurn(l)
	for _, cb := range content {
		b := t.matchBlock(m.ID, cb)
		b.ended = true
		if l.Aborted {
			// An interrupted block: leave it open so turn_completed
			// marks it interrupted rather than done.
			continue
		}
		switch cb.Type {
		case "text":
			t.emit(protocol.Event{Type: protocol.EventTextEnd, ID: b.id, Text: cb.Text})
		case "thinking":
			t.emit(protocol.Event{Type: protocol.EventReasoningEnd, ID: b.id, Text: cb.Thinking})
		case "redacted_thinking":
			t.emit(protocol.Event{Type: protocol.EventReasoningEnd, ID: b.id, Redacted: true})
		case "tool_use":
			if cb.Name == planTool {
				t.tools[b.id] = &toolState{plan: true}
				t.plan(cb.Input)
				continue
			}
			if t.tools[b.id] == nil {
				t.tools[b.id] = &toolState{}
			}
			t.emit(protocol.Event{Type: protocol.EventToolCallStart, ID: b.id, Name: cb.Name, Kind: toolKind(cb.Name), Title: toolTitle(cb.Name, cb.Input), Input: cb.Input})
		}
	}
}

// matchBlock finds the streamed block a snapshot block ends: the first one
// of its message not yet ended, of the same type (the same id for a tool
// use). Without partial messages nothing streamed, and a block is made.
func (t *translator) matchBlock(msgID string, cb contentBlock) *block {
	bs := t.msgBlocks[msgID]
	for _, b := range bs {
		if b == nil || b.ended || b.typ != cb.Type {
			continue
		}
		if cb.Type == "tool_use" && b.id != t.toolID(cb.ID) {
			continue
		}
		return b
	}
	b := &block{typ: cb.Type, tool: cb.Name}
	if cb.Type == "tool_use" {
		b.id = t.toolID(cb.ID)
	} else {
		b.id = t.blockID(msgID, len(bs))
	}
	t.setBlock(msgID, len(bs), b)
	return b
}

func (t *translator) plan(input json.RawMessage) {
	var in struct {
		Todos []struct {
			Content string `json:"content"`
			Status  string `json:"status"`
		} `json:"todos"`
	}
	if err := json.Unmarshal(input, &in); err != nil {
		t.log.Warn("claude TodoWrite input", "err", err)
		return
	}
	entries := make([]protocol.PlanEntry, 0, len(in.Todos))
	for _, td := range in.Todos {
		st := protocol.PlanStatus(td.Status)
		if st != protocol.PlanInProgress && st != protocol.PlanCompleted {
			st = protocol.PlanPending
		}
		entries = append(entries, protocol.PlanEntry{Content: td.Content, Status: st})
	}
	t.emit(protocol.Event{Type: protocol.EventPlanUpdated, ID: t.turn + ":plan", Entries: entries})
}

// user handles a user message from the CLI: tool results end tool calls.
// Its text messages (the prompt echoed, "[Request interrupted by user]")
// are not shown: agentd reported the prompt itself.
func (t *translator) user(l *line) {
	var m apiMessage
	if err := json.Unmarshal(l.Message, &m); err != nil {
		t.log.Warn("claude user message", "err", err)
		return
	}
	var content []contentBlock
	if json.Unmarshal(m.Content, &content) != nil {
		return // plain text
	}
	for _, cb := range content {
		if cb.Type != "tool_result" {
			continue
		}
		t.ensureTurn(l)
		id := t.toolID(cb.ToolUseID)
		ts := t.tools[id]
		if ts != nil && ts.plan {
			continue
		}
		ev := protocol.Event{Type: protocol.EventToolCallEnd, ID: id, Status: protocol.ToolCompleted, Output: resultText(cb.Content)}
		if cb.IsError {
			ev.Status = protocol.ToolFailed
			switch {
			case ts != nil && ts.denied:
				ev.Status = protocol.ToolDenied
			case t.interrupted || ts != nil && ts.cancelled:
				ev.Status = protocol.ToolCancelled
			}
		}
		t.emit(ev)
	}
}

// resultText flattens a tool_result's content (a string or text blocks).
func resultText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var bs []contentBlock
	if json.Unmarshal(raw, &bs) != nil {
		return ""
	}
	var parts []string
	for _, b := range bs {
		if b.Type == "text" {
			parts = append(parts, b.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// result ends the turn.
func (t *translator) result(l *line) {
	if t.turn == "" {
		t.log.Info("claude result outside a turn", "subtype", l.Subtype)
		return
	}
	for _, p := range t.perms {
		t.answerPermission(p, protocol.Command{Outcome: protocol.OutcomeCancelled}, false)
	}
	if u := t.usage(l); u != nil {
		t.emit(*u)
	}
	end := protocol.Event{Type: protocol.EventTurnCompleted, TurnID: t.turn, StopReason: t.stopReason(l)}
	var text string
	if json.Unmarshal(l.Result, &text) == nil {
		end.ResultText = text
	}
	if l.Subtype != "success" || l.IsError {
		// An error result's words are the CLI's account of why the turn
		// stopped, whatever the stop reason: an aborted turn ends in one
		// (error_during_execution) and is cancelled, not failed, but
		// what Claude Code said stays on it, as the other adapters keep
		// theirs. Its result text, if any, is that error too.
		end.Error = resultError(l, text, end.StopReason == protocol.StopError)
		end.ResultText = ""
	}
	t.emit(end)
	t.turn, t.interrupted = "", false
	t.next()
}

func (t *translator) stopReason(l *line) protocol.StopReason {
	if l.Subtype == "success" && !l.IsError {
		switch l.StopReason {
		case "max_tokens":
			return protocol.StopMaxTokens
		case "refusal":
			return protocol.StopRefusal
		}
		return protocol.StopEndTurn
	}
	switch {
	case t.interrupted || strings.HasPrefix(l.TerminalReason, "aborted"):
		return protocol.StopCancelled
	case l.Subtype == "error_max_turns":
		return protocol.StopMaxTurns
	}
	return protocol.StopError
}

// resultError is what an error result says: its errors, else its text.
// When it says neither, a failed turn (named) gets the result's subtype;
// a turn that ended otherwise (cancelled, max_turns) gets nothing agentd
// would make up.
func resultError(l *line, text string, named bool) string {
	var errs []string
	if json.Unmarshal(l.Errors, &errs) == nil && len(errs) > 0 {
		return strings.Join(errs, "; ")
	}
	if text != "" || !named {
		return text
	}
	return "claude: " + l.Subtype
}

// usage maps a result's usage: tokens of this turn (input counts cached
// and cache-written tokens too), its cost (the CLI reports the session's
// running total) and the model's context window.
func (t *translator) usage(l *line) *protocol.Event {
	if l.Usage == nil && l.TotalCostUSD == nil {
		return nil
	}
	ev := &protocol.Event{Type: protocol.EventUsageUpdated}
	if u := l.Usage; u != nil {
		in := u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
		out, cached := u.OutputTokens, u.CacheReadInputTokens
		ev.InputTokens, ev.OutputTokens, ev.CachedInputTokens = &in, &out, &cached
	}
	if c := l.TotalCostUSD; c != nil {
		// Rounded: the CLI's float sums carry noise in the last digits.
		cost := math.Round((*c-t.lastCost)*1e9) / 1e9
		t.lastCost = *c
		ev.CostUSD = &cost
	}
	if mu, ok := l.ModelUsage[t.info.Model]; ok && mu.ContextWindow > 0 {
		size := mu.ContextWindow
		ev.ContextSize = &size
	}
	return ev
}

// controlRequest handles a request from the CLI: can_use_tool becomes a
// permission request; anything else (hooks, MCP, elicitation) agentd did
// not ask for and refuses, so the CLI does not wait for it.
func (t *translator) controlRequest(l *line) {
	var req canUseTool
	if err := json.Unmarshal(l.Request, &req); err != nil || req.Subtype != "can_use_tool" {
		t.log.Info("refusing claude control request", "subtype", req.Subtype)
		t.send(map[string]any{"type": "control_response", "response": map[string]any{"subtype": "error", "request_id": l.RequestID, "error": "agentd does not handle " + req.Subtype}})
		return
	}
	t.ensureTurn(l)
	t.permN++
	p := &pendingPermission{id: t.turn + ":perm-" + strconv.Itoa(t.permN), requestID: l.RequestID, input: req.Input, suggestions: req.Suggestions}
	name := req.DisplayName
	if name == "" {
		name = req.ToolName
	}
	title := name
	if req.Description != "" {
		title = name + ": " + req.Description
	}
	if req.ToolUseID != "" {
		p.toolID = t.toolID(req.ToolUseID)
		if t.tools[p.toolID] == nil {
			t.tools[p.toolID] = &toolState{}
			t.emit(protocol.Event{Type: protocol.EventToolCallStart, ID: p.toolID, Name: req.ToolName, Kind: toolKind(req.ToolName), Title: toolTitle(req.ToolName, req.Input), Input: req.Input})
		}
	}
	opts := []protocol.PermissionOption{{ID: "allow_once", Name: "Allow", Kind: protocol.AllowOnce}}
	if len(req.Suggestions) > 0 {
		// "Always" means: apply the rules Claude Code suggests for this
		// call (a permission mode or an allow rule for the session).
		opts = append(opts, protocol.PermissionOption{ID: "allow_always", Name: "Always allow", Kind: protocol.AllowAlways})
	}
	opts = append(opts, protocol.PermissionOption{ID: "reject_once", Name: "Deny", Kind: protocol.RejectOnce})
	t.perms[p.id] = p
	t.emit(protocol.Event{Type: protocol.EventPermissionRequested, ID: p.id, ToolCallID: p.toolID, Title: title, Input: req.Input, Options: opts})
}

// answerPermission answers the CLI and reports the outcome. interrupt
// tells Claude Code to stop the turn too (an abort).
func (t *translator) answerPermission(p *pendingPermission, c protocol.Command, interrupt bool) {
	resp := map[string]any{"behavior": "deny", "message": "The user dismissed the permission request."}
	resolved := protocol.Event{Type: protocol.EventPermissionResolved, ID: p.id, Outcome: protocol.OutcomeCancelled}
	if c.Outcome != protocol.OutcomeCancelled {
		switch c.OptionID {
		case "allow_once", "allow_always":
			resp = map[string]any{"behavior": "allow", "updatedInput": p.input}
			if c.OptionID == "allow_always" && len(p.suggestions) > 0 {
				resp["updatedPermissions"] = p.suggestions
			}
			resolved.Outcome, resolved.OptionID = protocol.OutcomeSelected, c.OptionID
		case "reject_once":
			resp["message"] = "The user denied this tool use."
			resolved.Outcome, resolved.OptionID = protocol.OutcomeSelected, c.OptionID
			if ts := t.tools[p.toolID]; ts != nil {
				ts.denied = true
			}
		default:
			t.log.Warn("permission_response names an unknown option; cancelling", "requestId", p.id, "optionId", c.OptionID)
		}
	}
	if resolved.Outcome == protocol.OutcomeCancelled {
		if ts := t.tools[p.toolID]; ts != nil {
			ts.cancelled = true
		}
	}
	if interrupt {
		resp["interrupt"] = true
	}
	t.send(map[string]any{"type": "control_response", "response": map[string]any{"subtype": "success", "request_id": p.requestID, "response": resp}})
	t.resolve(p, resolved)
}

func (t *translator) resolve(p *pendingPermission, ev protocol.Event) {
	delete(t.perms, p.id)
	t.emit(ev)
}

// toolKind classifies Claude Code's built-in tools like ACP's tool kinds.
func toolKind(name string) string {
	switch name {
	case "Bash", "BashOutput", "KillShell", "KillBash", "PowerShell":
		return "execute"
	case "Read", "NotebookRead":
		return "read"
	case "Write", "Edit", "MultiEdit", "NotebookEdit":
		return "edit"
	case "Glob", "Grep", "LS", "ToolSearch":
		return "search"
	case "WebFetch", "WebSearch":
		return "fetch"
	case "Task", "Agent":
		return "think"
	}
	return "other"
}

// toolTitle is a one-line description of a call from its input.
func toolTitle(name string, input json.RawMessage) string {
	var in map[string]any
	if json.Unmarshal(input, &in) != nil {
		return ""
	}
	for _, k := range []string{"command", "file_path", "notebook_path", "pattern", "url", "query", "description"} {
		if s, ok := in[k].(string); ok && s != "" {
			if i := strings.IndexByte(s, '\n'); i >= 0 {
				s = s[:i] + " …"
			}
			return s
		}
	}
	return ""
}
