package acp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	acpsdk "github.com/coder/acp-go-sdk"

	"github.com/rein-ai/rein/protocol"
)

// Protocol is the agent.protocol value of ACP agents.
const Protocol = "acp"

// clientVersion is sent as clientInfo in initialize.
const clientVersion = "1"

// Options wires one run of an ACP agent.
type Options struct {
	Stdin  io.WriteCloser
	Stdout io.Reader
	// Commands: prompt, abort, permission_response and shutdown.
	Commands <-chan protocol.Command
	// Emit receives every event in order; it may block (backpressure).
	// The SDK queues up to 1024 notifications while it blocks.
	Emit func(context.Context, protocol.Event) error
	// Name is the agent name when the agent's initialize answer has none.
	Name string
	// Cwd is the ACP session's working directory.
	Cwd    string
	Logger *slog.Logger
}

// Serve initializes the agent, opens one ACP session and relays commands
// and updates until the agent's stdout ends (nil) or the agent refuses the
// handshake (an error; the supervisor then stops and restarts it). It has
// waited for every goroutine it started when it returns.
func Serve(ctx context.Context, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &adapter{opts: opts, log: log, ctx: ctx, perms: map[string]*pendingPermission{}}
	conn := acpsdk.NewClientSideConnection(a, opts.Stdin, opts.Stdout)
	conn.SetLogger(log)
	a.conn = conn
	defer opts.Stdin.Close()

	sid, err := a.handshake(ctx)
	if err != nil {
		// Stop the agent and let the supervisor see it exit.
		opts.Stdin.Close()
		if c, ok := opts.Stdout.(io.Closer); ok {
			c.Close()
		}
		<-conn.Done()
		return err
	}
	a.sid = sid

	var wg sync.WaitGroup
	defer wg.Wait()
	type result struct {
		resp acpsdk.PromptResponse
		err  error
	}
	done := make(chan result, 1)
	var queue []protocol.Command
	running := false
	startNext := func() {
		if running || len(queue) == 0 {
			return
		}
		c := queue[0]
		queue = queue[1:]
		running = true
		a.beginTurn(c)
		wg.Go(func() {
			resp, err := conn.Prompt(ctx, acpsdk.PromptRequest{SessionId: sid, Prompt: []acpsdk.ContentBlock{acpsdk.TextBlock(c.Text)}})
			done <- result{resp, err}
		})
	}
	for {
		select {
		case c, ok := <-opts.Commands:
			if !ok {
				opts.Commands = nil
				continue
			}
			switch c.Type {
			case protocol.CommandPrompt:
				// ACP runs one prompt at a time per session: queue.
				queue = append(queue, c)
				startNext()
			case protocol.CommandAbort:
				if running {
					a.abort(ctx)
				}
			case protocol.CommandPermissionResponse:
				a.answer(c)
			case protocol.CommandShutdown:
				// ACP agents end when their input closes.
				opts.Stdin.Close()
			}
		case r := <-done:
			running = false
			a.endTurn(r.resp, r.err, conn.Done())
			startNext()
		case <-conn.Done():
			if running {
				// The prompt call returns now that the connection is gone;
				// the supervisor reports the exit and ends the turn.
				<-done
			}
			return nil
		}
	}
}

// adapter is the ACP client side: it implements acpsdk.Client.
type adapter struct {
	opts Options
	log  *slog.Logger
	ctx  context.Context
	conn *acpsdk.ClientSideConnection
	sid  acpsdk.SessionId

	// mu serializes the turn state and emission: updates (SDK goroutine),
	// permission requests (SDK goroutines) and turn boundaries (Serve).
	mu      sync.Mutex
	turn    string          // current turn id, "" between turns
	blocks  int             // text/reasoning blocks started in the turn
	open    *block          // the block being streamed, if any
	tools   map[string]bool // tool ids started in the turn
	permN   int
	perms   map[string]*pendingPermission
	planSeq int
}

// block is a text or reasoning block being streamed.
type block struct {
	id        string
	kind      string // agent_message_chunk or agent_thought_chunk
	messageID string
	text      strings.Builder
}

type pendingPermission struct {
	options map[string]acpsdk.PermissionOptionId // Rein option id -> ACP id
	answer  chan protocol.Command                // buffered 1
}

func (a *adapter) emit(ev protocol.Event) {
	if err := a.opts.Emit(a.ctx, ev); err != nil {
		a.log.Warn("event not delivered", "type", ev.Type, "err", err)
	}
}

func (a *adapter) handshake(ctx context.Context) (acpsdk.SessionId, error) {
	init, err := a.conn.Initialize(ctx, acpsdk.InitializeRequest{
		ProtocolVersion: acpsdk.ProtocolVersionNumber,
		ClientInfo:      &acpsdk.Implementation{Name: "agentd", Version: clientVersion},
		// No fs or terminal capabilities: the agent works in its own
		// sandbox and asks only for permissions.
	})
	if err != nil {
		return "", fmt.Errorf("acp initialize: %w", err)
	}
	info := protocol.AgentInfo{Name: a.opts.Name, Protocol: Protocol}
	if init.AgentInfo != nil && init.AgentInfo.Name != "" {
		info.Name, info.Version = init.AgentInfo.Name, init.AgentInfo.Version
	}
	sess, err := a.conn.NewSession(ctx, acpsdk.NewSessionRequest{Cwd: a.opts.Cwd, McpServers: []acpsdk.McpServer{}})
	if err != nil {
		return "", fmt.Errorf("acp session/new: %w", err)
	}
	a.emit(protocol.Event{Type: protocol.EventAgentStarted, Agent: &info, Cwd: a.opts.Cwd})
	return sess.SessionId, nil
}

// beginTurn reports a prompt: agentd, not the ACP agent, opens Rein turns.
// Ids derive from the command id, which is unique in the session, so they
// stay unique across agent restarts.
func (a *adapter) beginTurn(c protocol.Command) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := strconv.FormatInt(c.ID, 10)
	a.turn, a.blocks, a.open, a.tools, a.permN = "turn-"+n, 0, nil, map[string]bool{}, 0
	a.emit(protocol.Event{Type: protocol.EventTurnStarted, TurnID: a.turn, PromptID: "prompt-" + n, Source: protocol.SourceUser})
	a.emit(protocol.Event{Type: protocol.EventUserMessage, ID: "user-" + n, Text: c.Text, PromptID: "prompt-" + n})
}

// endTurn maps session/prompt's answer to turn_completed.
func (a *adapter) endTurn(resp acpsdk.PromptResponse, err error, connDone <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cancelPermissionsLocked()
	turn := a.turn
	a.turn = ""
	if err != nil {
		select {
		case <-connDone:
			// The agent died mid-turn: the supervisor ends the turn.
			return
		default:
		}
	}
	a.closeBlockLocked()
	ev := protocol.Event{Type: protocol.EventTurnCompleted, TurnID: turn, StopReason: stopReason(resp.StopReason)}
	if err != nil {
		ev.StopReason, ev.Error = protocol.StopError, err.Error()
	}
	a.emit(ev)
}

func stopReason(r acpsdk.StopReason) protocol.StopReason {
	switch r {
	case acpsdk.StopReasonMaxTokens:
		return protocol.StopMaxTokens
	case acpsdk.StopReasonMaxTurnRequests:
		return protocol.StopMaxTurns
	case acpsdk.StopReasonRefusal:
		return protocol.StopRefusal
	case acpsdk.StopReasonCancelled:
		return protocol.StopCancelled
	}
	return protocol.StopEndTurn
}

// abort sends session/cancel and, as ACP requires of the client, answers
// every pending permission request with cancelled.
func (a *adapter) abort(ctx context.Context) {
	if err := a.conn.Cancel(ctx, acpsdk.CancelNotification{SessionId: a.sid}); err != nil {
		a.log.Warn("acp session/cancel", "err", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cancelPermissionsLocked()
}

func (a *adapter) cancelPermissionsLocked() {
	for id, p := range a.perms {
		select {
		case p.answer <- protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: id, Outcome: protocol.OutcomeCancelled}:
		default:
		}
	}
}

// answer routes a permission_response to the request waiting for it.
func (a *adapter) answer(c protocol.Command) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.perms[c.RequestID]
	if !ok {
		a.log.Info("permission_response for no pending request", "requestId", c.RequestID)
		return
	}
	select {
	case p.answer <- c:
	default: // already answered
	}
}

// closeBlockLocked ends the block being streamed with its full text.
func (a *adapter) closeBlockLocked() {
	b := a.open
	if b == nil {
		return
	}
	a.open = nil
	t := protocol.EventTextEnd
	if b.kind == "agent_thought_chunk" {
		t = protocol.EventReasoningEnd
	}
	a.emit(protocol.Event{Type: t, ID: b.id, Text: b.text.String()})
}

// chunkLocked appends streamed text, starting a new block when the update
// kind or the messageId changes.
func (a *adapter) chunkLocked(kind string, content acpsdk.ContentBlock, messageID *string) {
	if content.Text == nil {
		a.log.Debug("ignoring non-text content chunk", "kind", kind)
		return
	}
	mid := ""
	if messageID != nil {
		mid = *messageID
	}
	if a.open != nil && (a.open.kind != kind || a.open.messageID != mid) {
		a.closeBlockLocked()
	}
	if a.open == nil {
		a.blocks++
		name := "text-"
		if kind == "agent_thought_chunk" {
			name = "reasoning-"
		}
		a.open = &block{id: a.turn + ":" + name + strconv.Itoa(a.blocks), kind: kind, messageID: mid}
	}
	a.open.text.WriteString(content.Text.Text)
	t := protocol.EventTextDelta
	if kind == "agent_thought_chunk" {
		t = protocol.EventReasoningDelta
	}
	a.emit(protocol.Event{Type: t, ID: a.open.id, Delta: content.Text.Text})
}

// toolID namespaces an ACP tool call id by turn (agents reuse ids across
// prompts) and keeps it within the event id charset.
func (a *adapter) toolID(id acpsdk.ToolCallId) string {
	return a.turn + ":" + protocol.SanitizeEventID(string(id), 64)
}

func rawJSON(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil || string(b) == "null" {
		return nil
	}
	return b
}

func toolStatus(s acpsdk.ToolCallStatus) protocol.ToolStatus {
	switch s {
	case acpsdk.ToolCallStatusInProgress:
		return protocol.ToolRunning
	case acpsdk.ToolCallStatusCompleted:
		return protocol.ToolCompleted
	case acpsdk.ToolCallStatusFailed:
		return protocol.ToolFailed
	case acpsdk.ToolCallStatusPending:
		return protocol.ToolPending
	}
	return ""
}

func toolName(kind acpsdk.ToolKind) string {
	if kind == "" {
		return "tool"
	}
	return string(kind)
}

// startToolLocked reports a new tool call, and any state it starts with.
func (a *adapter) startToolLocked(id string, kind acpsdk.ToolKind, title string, input any, status acpsdk.ToolCallStatus, locations []acpsdk.ToolCallLocation, content []acpsdk.ToolCallContent) {
	a.tools[id] = true
	a.emit(protocol.Event{Type: protocol.EventToolCallStart, ID: id, Name: toolName(kind), Kind: string(kind), Title: title, Input: rawJSON(input)})
	a.updateToolLocked(id, toolStatus(status), nil, nil, nil, locations, content, nil)
}

// updateToolLocked maps a tool call update: a final status becomes
// tool_call_end (after an update carrying the other fields), anything else
// a tool_call_update whose fields replace the artifact's.
func (a *adapter) updateToolLocked(id string, status protocol.ToolStatus, title *string, kind *acpsdk.ToolKind, input any, locations []acpsdk.ToolCallLocation, content []acpsdk.ToolCallContent, output any) {
	up := protocol.Event{Type: protocol.EventToolCallUpdate, ID: id, Input: rawJSON(input)}
	if title != nil {
		up.Title = *title
	}
	if kind != nil {
		up.Kind = string(*kind)
	}
	if locations != nil {
		up.Locations = rawJSON(locations)
	}
	if content != nil {
		up.Content = rawJSON(content)
	}
	final := status == protocol.ToolCompleted || status == protocol.ToolFailed
	if !final {
		up.Status = status
	}
	if up.Status != "" || up.Title != "" || up.Kind != "" || up.Input != nil || up.Locations != nil || up.Content != nil {
		a.emit(up)
	}
	if final {
		a.emit(protocol.Event{Type: protocol.EventToolCallEnd, ID: id, Status: status, Result: rawJSON(output)})
	}
}

// SessionUpdate maps session/update notifications to ReinEvents.
func (a *adapter) SessionUpdate(_ context.Context, n acpsdk.SessionNotification) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.turn == "" {
		// Updates outside a prompt (available commands, a replayed
		// history) have no turn to belong to.
		a.log.Debug("ignoring session/update outside a turn")
		return nil
	}
	u := n.Update
	switch {
	case u.AgentMessageChunk != nil:
		a.chunkLocked("agent_message_chunk", u.AgentMessageChunk.Content, u.AgentMessageChunk.MessageId)
		return nil
	case u.AgentThoughtChunk != nil:
		a.chunkLocked("agent_thought_chunk", u.AgentThoughtChunk.Content, u.AgentThoughtChunk.MessageId)
		return nil
	case u.UserMessageChunk != nil:
		return nil // agentd reported the prompt itself
	}
	// Any other update kind ends the text being streamed, so text after a
	// tool call lands in a new block, in order.
	a.closeBlockLocked()
	switch {
	case u.ToolCall != nil:
		tc := u.ToolCall
		a.startToolLocked(a.toolID(tc.ToolCallId), tc.Kind, tc.Title, tc.RawInput, tc.Status, tc.Locations, tc.Content)
	case u.ToolCallUpdate != nil:
		tc := u.ToolCallUpdate
		id := a.toolID(tc.ToolCallId)
		if !a.tools[id] {
			title := ""
			if tc.Title != nil {
				title = *tc.Title
			}
			var kind acpsdk.ToolKind
			if tc.Kind != nil {
				kind = *tc.Kind
			}
			a.startToolLocked(id, kind, title, tc.RawInput, "", nil, nil)
		}
		var status protocol.ToolStatus
		if tc.Status != nil {
			status = toolStatus(*tc.Status)
		}
		a.updateToolLocked(id, status, tc.Title, tc.Kind, tc.RawInput, tc.Locations, tc.Content, tc.RawOutput)
	case u.Plan != nil:
		entries := make([]protocol.PlanEntry, 0, len(u.Plan.Entries))
		for _, e := range u.Plan.Entries {
			entries = append(entries, protocol.PlanEntry{Content: e.Content, Status: protocol.PlanStatus(e.Status), Priority: string(e.Priority)})
		}
		a.emit(protocol.Event{Type: protocol.EventPlanUpdated, ID: a.turn + ":plan", Entries: entries})
	case u.SessionInfoUpdate != nil && u.SessionInfoUpdate.Title != nil:
		a.emit(protocol.Event{Type: protocol.EventSessionInfo, Title: *u.SessionInfoUpdate.Title})
	default:
		a.log.Debug("ignoring session/update kind")
	}
	return nil
}

// RequestPermission reports the request and waits for the matching
// permission_response command (or an abort, which answers cancelled).
func (a *adapter) RequestPermission(ctx context.Context, req acpsdk.RequestPermissionRequest) (acpsdk.RequestPermissionResponse, error) {
	a.mu.Lock()
	if a.turn == "" {
		a.mu.Unlock()
		return acpsdk.RequestPermissionResponse{Outcome: acpsdk.NewRequestPermissionOutcomeCancelled()}, nil
	}
	a.closeBlockLocked()
	a.permN++
	id := a.turn + ":perm-" + strconv.Itoa(a.permN)
	toolID := a.toolID(req.ToolCall.ToolCallId)
	title := "Permission requested"
	if req.ToolCall.Title != nil && *req.ToolCall.Title != "" {
		title = *req.ToolCall.Title
	}
	if !a.tools[toolID] {
		var kind acpsdk.ToolKind
		if req.ToolCall.Kind != nil {
			kind = *req.ToolCall.Kind
		}
		a.startToolLocked(toolID, kind, title, req.ToolCall.RawInput, "", req.ToolCall.Locations, req.ToolCall.Content)
	}
	p := &pendingPermission{options: map[string]acpsdk.PermissionOptionId{}, answer: make(chan protocol.Command, 1)}
	opts := make([]protocol.PermissionOption, 0, len(req.Options))
	for _, o := range req.Options {
		oid := protocol.SanitizeEventID(string(o.OptionId), 64)
		p.options[oid] = o.OptionId
		opts = append(opts, protocol.PermissionOption{ID: oid, Name: o.Name, Kind: protocol.OptionKind(o.Kind)})
	}
	a.perms[id] = p
	a.emit(protocol.Event{Type: protocol.EventPermissionRequested, ID: id, ToolCallID: toolID, Title: title, Input: rawJSON(req.ToolCall.RawInput), Options: opts})
	a.mu.Unlock()

	var c protocol.Command
	select {
	case c = <-p.answer:
	case <-ctx.Done():
		c = protocol.Command{Outcome: protocol.OutcomeCancelled}
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.perms, id)
	acpID, known := p.options[c.OptionID]
	if c.Outcome == protocol.OutcomeCancelled || !known {
		if c.Outcome != protocol.OutcomeCancelled {
			a.log.Warn("permission_response names an unknown option; cancelling", "requestId", id, "optionId", c.OptionID)
		}
		a.emit(protocol.Event{Type: protocol.EventPermissionResolved, ID: id, Outcome: protocol.OutcomeCancelled})
		return acpsdk.RequestPermissionResponse{Outcome: acpsdk.NewRequestPermissionOutcomeCancelled()}, nil
	}
	a.emit(protocol.Event{Type: protocol.EventPermissionResolved, ID: id, Outcome: protocol.OutcomeSelected, OptionID: c.OptionID})
	return acpsdk.RequestPermissionResponse{Outcome: acpsdk.NewRequestPermissionOutcomeSelected(acpID)}, nil
}

// The client capabilities agentd does not offer (it advertised none).

func (a *adapter) ReadTextFile(context.Context, acpsdk.ReadTextFileRequest) (acpsdk.ReadTextFileResponse, error) {
	return acpsdk.ReadTextFileResponse{}, acpsdk.NewMethodNotFound(acpsdk.ClientMethodFsReadTextFile)
}

func (a *adapter) WriteTextFile(context.Context, acpsdk.WriteTextFileRequest) (acpsdk.WriteTextFileResponse, error) {
	return acpsdk.WriteTextFileResponse{}, acpsdk.NewMethodNotFound(acpsdk.ClientMethodFsWriteTextFile)
}

func (a *adapter) CreateTerminal(context.Context, acpsdk.CreateTerminalRequest) (acpsdk.CreateTerminalResponse, error) {
	return acpsdk.CreateTerminalResponse{}, acpsdk.NewMethodNotFound(acpsdk.ClientMethodTerminalCreate)
}

func (a *adapter) KillTerminal(context.Context, acpsdk.KillTerminalRequest) (acpsdk.KillTerminalResponse, error) {
	return acpsdk.KillTerminalResponse{}, acpsdk.NewMethodNotFound(acpsdk.ClientMethodTerminalKill)
}

func (a *adapter) TerminalOutput(context.Context, acpsdk.TerminalOutputRequest) (acpsdk.TerminalOutputResponse, error) {
	return acpsdk.TerminalOutputResponse{}, acpsdk.NewMethodNotFound(acpsdk.ClientMethodTerminalOutput)
}

func (a *adapter) ReleaseTerminal(context.Context, acpsdk.ReleaseTerminalRequest) (acpsdk.ReleaseTerminalResponse, error) {
	return acpsdk.ReleaseTerminalResponse{}, acpsdk.NewMethodNotFound(acpsdk.ClientMethodTerminalRelease)
}

func (a *adapter) WaitForTerminalExit(context.Context, acpsdk.WaitForTerminalExitRequest) (acpsdk.WaitForTerminalExitResponse, error) {
	return acpsdk.WaitForTerminalExitResponse{}, acpsdk.NewMethodNotFound(acpsdk.ClientMethodTerminalWaitForExit)
}
