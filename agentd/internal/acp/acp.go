package acp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	acpsdk "github.com/coder/acp-go-sdk"

	"github.com/rein-ai/rein/agentd/internal/notapplied"
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
	Cwd string
	// Mode, when set, is the session mode agentd selects with
	// session/set_mode right after session/new (e.g. codex-acp's
	// "read-only", "workspace-write", "agent" or "agent-full-access");
	// it must be one the agent lists.
	Mode   string
	Logger *slog.Logger
	// Transcript, when set, receives one JSON line per message read from
	// or written to the agent and per command handled: {"from": ...},
	// {"to": ...} or {"command": ...}.
	Transcript io.Writer
	// Resume is an ACP session id to load with session/load ("" opens a
	// new session). When the agent does not advertise loadSession or the
	// load fails, a new session opens and a warning notice says so.
	Resume string
	// Conversation, when set, gets the id of the session the run is in.
	Conversation func(id string)
}

// NoticeResumeFailed is the notice code when the previous session could
// not be loaded and a new one opened.
const NoticeResumeFailed = "conversation_not_resumed"

// NoticeOptionsLeftOut is the notice code when a permission request's
// options of kinds Rein does not know were not shown.
const NoticeOptionsLeftOut = "permission_options_left_out"

// NoticeUnknownStopReason is the notice code when the agent ended a turn
// with a stop reason ACP does not define.
const NoticeUnknownStopReason = "unknown_stop_reason"

// Serve initializes the agent, opens one ACP session and relays commands
// and updates until the agent's stdout ends (nil), or the agent refuses the
// handshake or the SDK ends the connection while the agent's output goes
// on (an error; the supervisor then stops and restarts it). It reads
// commands from the start, so a shutdown during the handshake closes the
// agent's input at once. It has waited for every goroutine it started
// when it returns.
func Serve(ctx context.Context, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := newAdapter(ctx, opts, log)
	rec := &recorder{w: opts.Transcript, log: log}
	// The SDK runs every inbound request in a goroutine of its own while
	// it queues notifications, so a permission request could overtake the
	// updates sent before it. The ordered reader maps session/update and
	// announces permission requests itself, in the order they were read,
	// before the SDK sees the line.
	in := &orderedReader{r: bufio.NewReaderSize(opts.Stdout, 64*1024), a: a, rec: rec, ready: make(chan struct{})}
	conn := acpsdk.NewClientSideConnection(a, &recordingWriter{w: opts.Stdin, rec: rec, prompt: &a.prompt}, in)
	sdkLog := &gate{}
	defer sdkLog.close()
	conn.SetLogger(slog.New(gatedHandler{sdkLog, log.Handler()}))
	a.conn = conn
	close(in.ready) // the SDK's reader may start (see orderedReader.ready)
	defer opts.Stdin.Close()

	var wg sync.WaitGroup
	defer wg.Wait()
	// The handshake runs beside the loop below, which reads commands
	// meanwhile: an agent slow to start (an npm-launched ACP bridge takes
	// seconds to initialise) would otherwise hold a shutdown unread, and
	// with it the close of its input, until its handshake was done; the
	// agent was then stopped only by the signals after --shutdown-grace.
	type handshakeResult struct {
		sid acpsdk.SessionId
		err error
	}
	shaken := make(chan handshakeResult, 1)
	wg.Go(func() {
		sid, err := a.handshake(ctx)
		shaken <- handshakeResult{sid, err}
	})
	// held: the prompts and aborts read during the handshake, in order,
	// handled once the session is open, as if they had come then (an
	// abort after a prompt aborts that prompt's turn).
	var held []protocol.Command
	type result struct {
		resp acpsdk.PromptResponse
		err  error
	}
	done := make(chan result, 1)
	var queue []protocol.Command
	running := false
	// closed: agentd is stopping and closed the agent's input. The agent
	// may still answer the prompt in flight, but a prompt queued behind
	// it (or read during the handshake) can no longer reach the agent:
	// started, its turn_started would count it as taken and it would be
	// lost (its session/prompt fails), while left alone it goes to the
	// next agentd.
	closed := false
	// closeWhen, while not nil, holds the close of the agent's input
	// (closed set) until the request of the prompt in flight is written:
	// its turn has started, which counts the prompt as taken, and the
	// SDK writes the request from the prompt's own goroutine, a moment
	// after. Closed under it, the request failed ("file already
	// closed"): the prompt never reached the agent, lost, its turn
	// failed.
	var closeWhen <-chan struct{}
	closeInput := func() {
		closeWhen = nil
		a.inputClosed.Store(true)
		opts.Stdin.Close()
	}
	// abortWhen, while not nil, holds an abort until the request of the
	// prompt in flight is written, for the same reason: a session/cancel
	// written before the session/prompt it is meant for cancels nothing,
	// the agent runs the aborted turn on, and agentd's abort escalation
	// then signals it.
	var abortWhen <-chan struct{}
	startNext := func() {
		if running || len(queue) == 0 || closed {
			return
		}
		select {
		case <-conn.Done():
			// The agent is gone (it may have answered the last prompt
			// and exited): a turn started now could only fail, and its
			// turn_started would count the prompt as taken. Left in the
			// queue, the prompt is untaken, and the supervisor hands it
			// to the agent it starts next.
			return
		default:
		}
		c := queue[0]
		queue = queue[1:]
		running = true
		a.beginTurn(c)
		a.prompt.begin()
		wg.Go(func() {
			resp, err := conn.Prompt(ctx, acpsdk.PromptRequest{SessionId: a.sid, Prompt: []acpsdk.ContentBlock{acpsdk.TextBlock(c.Text)}})
			done <- result{resp, err}
		})
	}
	handle := func(c protocol.Command) {
		switch c.Type {
		case protocol.CommandPrompt:
			// ACP runs one prompt at a time per session: queue.
			queue = append(queue, c)
			startNext()
		case protocol.CommandAbort:
			if !running || abortWhen != nil {
				return
			}
			if w := a.prompt.unwritten(); w != nil {
				abortWhen = w
				return
			}
			a.abort(ctx)
		case protocol.CommandPermissionResponse:
			a.answer(c)
		case protocol.CommandShutdown:
			// ACP agents end when their input closes.
			if closed {
				return
			}
			closed = true
			if running {
				if w := a.prompt.unwritten(); w != nil {
					closeWhen = w
					return
				}
			}
			closeInput()
		}
	}
	for {
		// While the handshake runs, its end is awaited rather than the
		// connection's: the handshake ends soon after the connection
		// does (its calls fail), and how it ended decides what follows.
		var connDone <-chan struct{}
		if shaken == nil {
			connDone = conn.Done()
		}
		select {
		case c, ok := <-opts.Commands:
			if !ok {
				opts.Commands = nil
				continue
			}
			rec.record("command", c)
			if shaken != nil {
				switch c.Type {
				case protocol.CommandPrompt, protocol.CommandAbort:
					held = append(held, c)
					continue
				case protocol.CommandPermissionResponse:
					// No request of this agent's can be waiting: it has
					// no session yet to ask in.
					a.log.Warn("permission answer before the agent's session opened; not applied", "id", c.ID, "requestId", c.RequestID)
					a.emit(notapplied.Notice(c, notapplied.NoSession))
					continue
				}
			}
			handle(c)
		case h := <-shaken:
			shaken = nil
			if h.err != nil && !closed {
				// Stop the agent and let the supervisor see it exit.
				// Its stdout first: its end, read before then, is the
				// agent's own (the supervisor's gone), not its answer
				// to its input closing.
				if c, ok := opts.Stdout.(io.Closer); ok {
					c.Close()
				}
				opts.Stdin.Close()
				<-conn.Done()
				return h.err
			}
			if h.err != nil {
				// Ended by the shutdown's close of the agent's input (a
				// request written after it failed, or the agent exited
				// without answering): the agent's output ends as it
				// exits. What was held is not taken.
				a.log.Info("acp handshake not done at shutdown", "err", h.err)
				held = nil
				continue
			}
			a.sid = h.sid // before any prompt's goroutine starts
			for _, c := range held {
				handle(c)
			}
			held = nil
		case <-closeWhen:
			closeInput()
		case <-abortWhen:
			abortWhen = nil
			a.abort(ctx)
		case r := <-done:
			running = false
			// An abort held for the call's request is moot: the turn it
			// was for has ended (the next one nobody aborted).
			abortWhen = nil
			r.resp, r.err = a.promptOutcome(r.resp, r.err)
			a.endTurn(r.resp, r.err, conn.Done())
			if closeWhen != nil {
				// The call ended without writing its request (the
				// connection went first).
				closeInput()
			}
			startNext()
		case <-connDone:
			if running {
				// The prompt call returns now that the connection is gone.
				// If the agent answered it before it went, the turn ended
				// as it said; otherwise the supervisor reports the exit
				// and ends the turn.
				r := <-done
				if resp, err := a.promptOutcome(r.resp, r.err); err == nil {
					a.endTurn(resp, nil, conn.Done())
				}
			}
			// The SDK reads only through in, and ends the connection
			// after its last read: in.err is settled.
			if in.err == nil {
				// The agent's output goes on, but the SDK ended the
				// connection: nothing the agent says can be heard now,
				// and it is stopped with the reason, not left to look
				// as if it had closed its output or exited on its own.
				if in.tooLong > 0 {
					return fmt.Errorf("acp: the agent wrote a message of %d bytes, over the ACP SDK's limit of %d, and the SDK ended the connection", in.tooLong, sdkMaxLine)
				}
				return errors.New("acp: the ACP SDK ended the connection while the agent's output went on (its queue of notifications was full)")
			}
			return nil
		}
	}
}

func newAdapter(ctx context.Context, opts Options, log *slog.Logger) *adapter {
	return &adapter{opts: opts, log: log, ctx: ctx, perms: map[string]*pendingPermission{}}
}

// adapter is the ACP client side: it implements acpsdk.Client.
type adapter struct {
	opts Options
	log  *slog.Logger
	ctx  context.Context
	conn *acpsdk.ClientSideConnection
	sid  acpsdk.SessionId

	// mu serializes the turn state and emission: updates and permission
	// announcements (the ordered reader), permission answers (SDK
	// goroutines) and turn boundaries (Serve).
	mu     sync.Mutex
	turn   string // current turn id, "" between turns
	blocks int    // text/reasoning blocks started in the turn
	open   *block // the block being streamed, if any
	tools  map[string]*toolState
	// toolOrder lists the turn's tool ids in the order they started.
	toolOrder []string
	// aborted: the user aborted the turn; tools the agent ends later end
	// cancelled, whatever status the agent gives them.
	aborted bool
	permN   int
	perms   map[string]*pendingPermission
	// cost is the session's cumulative cost in USD at the last
	// usage_update; costBase is what it was when the turn began.
	cost, costBase float64
	// modes are the session modes the agent offers (session/new).
	modes *acpsdk.SessionModeState
	// prompt is the answer the ordered reader read to the prompt in
	// flight (see promptReply).
	prompt promptReply
	// inputClosed: Serve closed the agent's input (shutdown), before the
	// handshake may be done.
	inputClosed atomic.Bool
}

// promptOutcome is a prompt call's outcome, with a failed call replaced
// by the agent's answer when the ordered reader read one (see
// promptReply).
func (a *adapter) promptOutcome(resp acpsdk.PromptResponse, err error) (acpsdk.PromptResponse, error) {
	if err == nil {
		return resp, nil
	}
	if read, ok := a.prompt.take(); ok {
		return read, nil
	}
	return resp, err
}

// toolState is what the adapter remembers of a tool call in the turn.
type toolState struct {
	ended bool
	// forced is the final status agentd decided (denied after a reject,
	// cancelled after an abort): the agent's own final status, which
	// follows, does not replace it.
	forced protocol.ToolStatus
	// output is the latest text output the agent reported, sent with
	// tool_call_end when the final update carries none.
	output string
}

// block is a text or reasoning block being streamed.
type block struct {
	id        string
	kind      string // agent_message_chunk or agent_thought_chunk
	messageID string
	text      strings.Builder
}

type pendingPermission struct {
	toolID  string
	options map[string]acpsdk.PermissionOption // by Rein option id
	answer  chan protocol.Command              // buffered 1
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
		// sandbox and asks only for permissions. terminal_output_delta
		// asks codex-acp to stream command output in _meta.
		ClientCapabilities: acpsdk.ClientCapabilities{Meta: map[string]any{"terminal_output_delta": true}},
	})
	if err != nil {
		return "", fmt.Errorf("acp initialize: %w", err)
	}
	info := protocol.AgentInfo{Name: a.opts.Name, Protocol: Protocol}
	if init.AgentInfo != nil && init.AgentInfo.Name != "" {
		info.Name, info.Version = init.AgentInfo.Name, init.AgentInfo.Version
	}
	sid, modes, err := a.loadSession(ctx, init.AgentCapabilities.LoadSession)
	if err != nil {
		return "", err
	}
	if sid == "" {
		sess, err := a.conn.NewSession(ctx, acpsdk.NewSessionRequest{Cwd: a.opts.Cwd, McpServers: []acpsdk.McpServer{}})
		if err != nil {
			return "", fmt.Errorf("acp session/new: %w", err)
		}
		sid, modes = sess.SessionId, sess.Modes
	}
	if a.opts.Mode != "" {
		if err := a.setMode(ctx, sid, modes); err != nil {
			return "", err
		}
	}
	if a.opts.Conversation != nil {
		a.opts.Conversation(string(sid))
	}
	a.emit(protocol.Event{Type: protocol.EventAgentStarted, Agent: &info, Cwd: a.opts.Cwd})
	return sid, nil
}

// loadSession loads Options.Resume when there is one and the agent can;
// "" means a new session is needed. The history the agent replays while
// loading arrives outside any turn and is not reported again. A load that
// failed because the agent is gone or its input closed (a crash, or
// agentd stopping) is an error, not a refusal: no notice says a new
// conversation starts, since none can, and the next run resumes it.
func (a *adapter) loadSession(ctx context.Context, canLoad bool) (acpsdk.SessionId, *acpsdk.SessionModeState, error) {
	if a.opts.Resume == "" {
		return "", nil, nil
	}
	why := "the agent does not advertise loadSession"
	if canLoad {
		resp, err := a.conn.LoadSession(ctx, acpsdk.LoadSessionRequest{SessionId: acpsdk.SessionId(a.opts.Resume), Cwd: a.opts.Cwd, McpServers: []acpsdk.McpServer{}})
		if err == nil {
			return acpsdk.SessionId(a.opts.Resume), resp.Modes, nil
		}
		if a.inputClosed.Load() || isDone(a.conn.Done()) {
			return "", nil, fmt.Errorf("acp session/load: %w", err)
		}
		why = "session/load: " + err.Error()
	}
	a.log.Warn("acp session not resumed; opening a new one", "session", a.opts.Resume, "why", why)
	a.emit(protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelWarning, NoticeCode: NoticeResumeFailed,
		Message: "the agent could not resume the previous conversation (ACP session " + a.opts.Resume + "): " + why + "; a new conversation starts"})
	return "", nil, nil
}

// isDone reports whether c is closed.
func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// setMode selects Options.Mode, refusing a mode the agent does not list
// (a typo would otherwise leave the agent in its default mode silently).
func (a *adapter) setMode(ctx context.Context, sid acpsdk.SessionId, modes *acpsdk.SessionModeState) error {
	var ids []string
	found := false
	if modes != nil {
		for _, m := range modes.AvailableModes {
			ids = append(ids, string(m.Id))
			found = found || string(m.Id) == a.opts.Mode
		}
	}
	if !found {
		return fmt.Errorf("acp session/set_mode: mode %q is not one the agent offers (%s)", a.opts.Mode, strings.Join(ids, ", "))
	}
	if _, err := a.conn.SetSessionMode(ctx, acpsdk.SetSessionModeRequest{SessionId: sid, ModeId: acpsdk.SessionModeId(a.opts.Mode)}); err != nil {
		return fmt.Errorf("acp session/set_mode %q: %w", a.opts.Mode, err)
	}
	return nil
}

// beginTurn reports a prompt: agentd, not the ACP agent, opens Rein turns.
// Ids derive from the command id, which is unique in the session, so they
// stay unique across agent restarts.
func (a *adapter) beginTurn(c protocol.Command) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := strconv.FormatInt(c.ID, 10)
	a.turn, a.blocks, a.open, a.tools, a.toolOrder, a.permN, a.aborted = "turn-"+n, 0, nil, map[string]*toolState{}, nil, 0, false
	a.costBase = a.cost
	a.emit(protocol.Event{Type: protocol.EventTurnStarted, TurnID: a.turn, PromptID: "prompt-" + n, Source: protocol.SourceUser})
	a.emit(protocol.Event{Type: protocol.EventUserMessage, ID: "user-" + n, Text: c.Text, PromptID: "prompt-" + n})
}

// endTurn maps session/prompt's answer to turn_completed. The SDK returns
// the answer only after the notifications read before it were handled.
func (a *adapter) endTurn(resp acpsdk.PromptResponse, err error, connDone <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cancelPermissionsLocked()
	turn := a.turn
	if err != nil {
		select {
		case <-connDone:
			// The agent died mid-turn: the supervisor ends the turn.
			a.turn = ""
			return
		default:
		}
	}
	a.closeBlockLocked()
	a.endForcedToolsLocked()
	u := resp.Usage
	if u == nil {
		u = quotaUsage(resp.Meta)
	}
	if u != nil && err == nil {
		// ACP's inputTokens leaves out the tokens read from and written
		// to the cache (its totalTokens adds them: claude-agent-acp,
		// codex-acp and opencode alike); Rein's counts them, as the
		// Claude Code and Codex adapters report the same request.
		in, out := int64(u.InputTokens), int64(u.OutputTokens)
		ev := protocol.Event{Type: protocol.EventUsageUpdated, InputTokens: &in, OutputTokens: &out}
		if u.CachedReadTokens != nil {
			c := int64(*u.CachedReadTokens)
			in += c
			ev.CachedInputTokens = &c
		}
		if u.CachedWriteTokens != nil {
			in += int64(*u.CachedWriteTokens)
		}
		a.emit(ev)
	}
	a.turn = ""
	ev := protocol.Event{Type: protocol.EventTurnCompleted, TurnID: turn, StopReason: stopReason(resp.StopReason)}
	if err != nil {
		ev.StopReason, ev.Error = protocol.StopError, err.Error()
	}
	if a.aborted {
		// The user aborted: whatever the agent made of it, the turn
		// was cancelled. That includes an error answer: ACP asks for
		// stopReason cancelled, but some agents fail the cancelled
		// prompt instead. Their error stays in the event.
		ev.StopReason = protocol.StopCancelled
	}
	if err == nil && !knownStopReason(resp.StopReason) {
		// Rein has no closer word for a reason ACP does not define (a
		// newer ACP's, an extension's), but the transcript says what
		// the agent said rather than pass it off as a normal end.
		a.log.Warn("acp stop reason of an unknown kind", "stopReason", resp.StopReason, "reads", ev.StopReason)
		a.emit(protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelWarning, NoticeCode: NoticeUnknownStopReason,
			Message: fmt.Sprintf("the agent ended the turn with stop reason %q, which Rein does not know; the turn reads %s", string(resp.StopReason), ev.StopReason)})
	}
	a.emit(ev)
}

// endForcedToolsLocked ends, at the end of a turn, the tools whose end
// agentd decided (denied after a reject, cancelled after an abort) but the
// agent never reported ended: Gemini CLI sends no update for a call the
// user rejected.
func (a *adapter) endForcedToolsLocked() {
	for _, id := range a.toolOrder {
		if t := a.tools[id]; !t.ended && t.forced != "" {
			t.ended = true
			a.emit(protocol.Event{Type: protocol.EventToolCallEnd, ID: id, Status: t.forced, Output: t.output})
		}
	}
}

// quotaUsage reads the token counts Gemini CLI puts in the prompt result's
// _meta.quota.token_count instead of usage; nil when there are none.
func quotaUsage(meta map[string]any) *acpsdk.Usage {
	q, _ := meta["quota"].(map[string]any)
	tc, _ := q["token_count"].(map[string]any)
	in, okIn := tc["input_tokens"].(float64)
	out, okOut := tc["output_tokens"].(float64)
	if !okIn || !okOut {
		return nil
	}
	return &acpsdk.Usage{InputTokens: int(in), OutputTokens: int(out)}
}

// knownStopReason reports whether r is one ACP defines, or missing
// (which reads end_turn: the agent stopped without saying why).
func knownStopReason(r acpsdk.StopReason) bool {
	switch r {
	case "", acpsdk.StopReasonEndTurn, acpsdk.StopReasonMaxTokens, acpsdk.StopReasonMaxTurnRequests, acpsdk.StopReasonRefusal, acpsdk.StopReasonCancelled:
		return true
	}
	return false
}

// stopReason maps an ACP stop reason; one Rein does not know (see
// knownStopReason) reads end_turn.
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
// every pending permission request with cancelled. Tools still open end
// cancelled, whatever the agent reports for them afterwards.
func (a *adapter) abort(ctx context.Context) {
	a.mu.Lock()
	a.aborted = true
	for _, t := range a.tools {
		if !t.ended && t.forced == "" {
			t.forced = protocol.ToolCancelled
		}
	}
	a.mu.Unlock()
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
	if ok {
		select {
		case p.answer <- c:
			return
		default: // already answered: an abort or the turn's end cancelled it
		}
	}
	// The agent withdrew the request ($/cancel_request) as the answer
	// was handed over, or an abort or the turn's end ended it: the
	// transcript shows it ended, and says the answer did nothing, as for
	// every answer not applied.
	a.log.Warn("permission answer for no pending request; not applied", "id", c.ID, "requestId", c.RequestID)
	a.emit(notapplied.Notice(c, notapplied.Ended))
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

// planEntry maps a plan entry. A status Rein does not know (ACP leaves
// room for more, such as "cancelled") would make the whole plan an event
// the server refuses: the entry reads pending, the one status that claims
// no progress, and its content says what the agent said. Priorities are
// free text in Rein.
func planEntry(e acpsdk.PlanEntry) protocol.PlanEntry {
	pe := protocol.PlanEntry{Content: e.Content, Status: protocol.PlanPending, Priority: string(e.Priority)}
	switch e.Status {
	case acpsdk.PlanEntryStatusPending:
	case acpsdk.PlanEntryStatusInProgress:
		pe.Status = protocol.PlanInProgress
	case acpsdk.PlanEntryStatusCompleted:
		pe.Status = protocol.PlanCompleted
	default:
		pe.Content += " (" + string(e.Status) + ")"
	}
	return pe
}

// optionID is an ACP option id as Rein carries it: made of the characters
// Rein's ids take, at most 64 bytes, and unlike the ids taken so far.
// SanitizeEventID keeps ids the agent tells apart apart ("allow once" and
// "allow_once", long ids alike in their first 64 bytes); should two still
// meet, the second gets a suffix: as one id, the second would have
// replaced the first, and choosing the first would have answered the
// agent with the second.
func optionID(raw string, taken map[string]acpsdk.PermissionOption) string {
	oid := protocol.SanitizeEventID(raw, 64)
	for n := 2; ; n++ {
		if _, dup := taken[oid]; !dup {
			return oid
		}
		suffix := "-" + strconv.Itoa(n)
		oid = protocol.SanitizeEventID(raw, 64-len(suffix)) + suffix
	}
}

// optionKind maps a permission option's kind; false for one Rein does not
// know (ACP reserves other values for its future versions and "_"-prefixed
// ones for extensions).
func optionKind(k acpsdk.PermissionOptionKind) (protocol.OptionKind, bool) {
	switch k {
	case acpsdk.PermissionOptionKindAllowOnce:
		return protocol.AllowOnce, true
	case acpsdk.PermissionOptionKindAllowAlways:
		return protocol.AllowAlways, true
	case acpsdk.PermissionOptionKindRejectOnce:
		return protocol.RejectOnce, true
	case acpsdk.PermissionOptionKindRejectAlways:
		return protocol.RejectAlways, true
	}
	return "", false
}

func toolName(kind acpsdk.ToolKind) string {
	if kind == "" {
		return "tool"
	}
	return string(kind)
}

// contentText is the text of a tool call's content blocks: what the
// claude and codex adapters send as a tool's output.
func contentText(content []acpsdk.ToolCallContent) string {
	var parts []string
	for _, c := range content {
		if c.Content != nil && c.Content.Content.Text != nil {
			parts = append(parts, c.Content.Content.Text.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// rawOutputText is the text of a rawOutput: a string, or the output field
// agents put in an object (codex-acp's formatted_output, an "output" or
// "stdout").
func rawOutputText(v any) string {
	switch o := v.(type) {
	case string:
		return o
	case map[string]any:
		for _, k := range []string{"formatted_output", "output", "stdout", "aggregated_output"} {
			if s, ok := o[k].(string); ok && s != "" {
				return s
			}
		}
	}
	return ""
}

// metaOutputDelta is codex-acp's streamed command output:
// _meta.terminal_output_delta.data.
func metaOutputDelta(meta map[string]any) string {
	d, _ := meta["terminal_output_delta"].(map[string]any)
	s, _ := d["data"].(string)
	return s
}

// toolUpdate is one ACP tool call report (tool_call, tool_call_update or
// the tool of a permission request), as optional fields.
type toolUpdate struct {
	status    protocol.ToolStatus
	title     *string
	kind      *acpsdk.ToolKind
	input     any
	locations []acpsdk.ToolCallLocation
	content   []acpsdk.ToolCallContent
	output    any
	meta      map[string]any
}

// startToolLocked reports a new tool call, and any state it starts with.
func (a *adapter) startToolLocked(id string, kind acpsdk.ToolKind, title string, u toolUpdate) {
	a.tools[id] = &toolState{}
	a.toolOrder = append(a.toolOrder, id)
	a.emit(protocol.Event{Type: protocol.EventToolCallStart, ID: id, Name: toolName(kind), Kind: string(kind), Title: title, Input: rawJSON(u.input)})
	u.title, u.kind, u.input = nil, nil, nil
	a.updateToolLocked(id, u)
}

// updateToolLocked maps a tool call update: a final status becomes
// tool_call_end (after an update carrying the other fields), anything else
// a tool_call_update whose fields replace the artifact's.
func (a *adapter) updateToolLocked(id string, u toolUpdate) {
	t := a.tools[id]
	if d := metaOutputDelta(u.meta); d != "" && !t.ended {
		a.emit(protocol.Event{Type: protocol.EventToolOutputDelta, ID: id, Delta: d})
	}
	up := protocol.Event{Type: protocol.EventToolCallUpdate, ID: id, Input: rawJSON(u.input)}
	if u.title != nil {
		up.Title = *u.title
	}
	if u.kind != nil {
		up.Kind = string(*u.kind)
	}
	if u.locations != nil {
		up.Locations = rawJSON(u.locations)
	}
	if u.content != nil {
		up.Content = rawJSON(u.content)
	}
	if s := contentText(u.content); s != "" {
		t.output = s
	} else if s := rawOutputText(u.output); s != "" {
		t.output = s
	}
	final := u.status == protocol.ToolCompleted || u.status == protocol.ToolFailed
	if !final && !t.ended && t.forced == "" {
		up.Status = u.status
	}
	if up.Status != "" || up.Title != "" || up.Kind != "" || up.Input != nil || up.Locations != nil || up.Content != nil {
		a.emit(up)
	}
	if final && !t.ended {
		t.ended = true
		status := u.status
		if t.forced != "" {
			status = t.forced
		}
		a.emit(protocol.Event{Type: protocol.EventToolCallEnd, ID: id, Status: status, Output: t.output, Result: rawJSON(u.output)})
	}
}

// SessionUpdate maps session/update notifications to ReinEvents. The
// ordered reader calls it, in the order the agent sent them.
func (a *adapter) SessionUpdate(_ context.Context, n acpsdk.SessionNotification) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.updateLocked(n)
	return nil
}

func (a *adapter) updateLocked(n acpsdk.SessionNotification) {
	u := n.Update
	if u.UsageUpdate != nil && u.UsageUpdate.Cost != nil && u.UsageUpdate.Cost.Currency == "USD" {
		// Remembered outside turns too: Rein costs are per turn.
		a.cost = u.UsageUpdate.Cost.Amount
	}
	if a.turn == "" {
		// Updates outside a prompt (available commands, a replayed
		// history) have no turn to belong to.
		a.log.Debug("ignoring session/update outside a turn")
		return
	}
	switch {
	case u.AgentMessageChunk != nil:
		a.chunkLocked("agent_message_chunk", u.AgentMessageChunk.Content, u.AgentMessageChunk.MessageId)
	case u.AgentThoughtChunk != nil:
		a.chunkLocked("agent_thought_chunk", u.AgentThoughtChunk.Content, u.AgentThoughtChunk.MessageId)
	case u.UserMessageChunk != nil:
		// agentd reported the prompt itself
	case u.ToolCall != nil:
		// A tool call ends the text being streamed, so text after it
		// lands in a new block, in order.
		a.closeBlockLocked()
		tc := u.ToolCall
		a.startToolLocked(a.toolID(tc.ToolCallId), tc.Kind, tc.Title, toolUpdate{
			status: toolStatus(tc.Status), input: tc.RawInput, locations: tc.Locations, content: tc.Content, output: tc.RawOutput, meta: tc.Meta,
		})
	case u.ToolCallUpdate != nil:
		a.closeBlockLocked()
		tc := u.ToolCallUpdate
		id := a.toolID(tc.ToolCallId)
		if a.tools[id] == nil {
			title := ""
			if tc.Title != nil {
				title = *tc.Title
			}
			var kind acpsdk.ToolKind
			if tc.Kind != nil {
				kind = *tc.Kind
			}
			a.startToolLocked(id, kind, title, toolUpdate{input: tc.RawInput})
		}
		var status protocol.ToolStatus
		if tc.Status != nil {
			status = toolStatus(*tc.Status)
		}
		a.updateToolLocked(id, toolUpdate{
			status: status, title: tc.Title, kind: tc.Kind, input: tc.RawInput, locations: tc.Locations,
			content: tc.Content, output: tc.RawOutput, meta: tc.Meta,
		})
	case u.Plan != nil:
		a.closeBlockLocked()
		entries := make([]protocol.PlanEntry, 0, len(u.Plan.Entries))
		for _, e := range u.Plan.Entries {
			entries = append(entries, planEntry(e))
		}
		a.emit(protocol.Event{Type: protocol.EventPlanUpdated, ID: a.turn + ":plan", Entries: entries})
	case u.SessionInfoUpdate != nil && u.SessionInfoUpdate.Title != nil:
		a.emit(protocol.Event{Type: protocol.EventSessionInfo, Title: *u.SessionInfoUpdate.Title})
	case u.UsageUpdate != nil:
		used, size := int64(u.UsageUpdate.Used), int64(u.UsageUpdate.Size)
		ev := protocol.Event{Type: protocol.EventUsageUpdated, ContextUsed: &used, ContextSize: &size}
		if c := u.UsageUpdate.Cost; c != nil && c.Currency == "USD" {
			// Rounded: float sums carry noise in the last digits.
			cost := math.Round((a.cost-a.costBase)*1e9) / 1e9
			ev.CostUSD = &cost
		}
		a.emit(ev)
	default:
		// Available commands, mode and config changes: nothing to show,
		// and the text being streamed goes on.
		a.log.Debug("ignoring session/update kind")
	}
}

// announceLocked reports a permission request the moment the ordered
// reader reads it, so it lands after the updates the agent sent before it,
// and returns its Rein id ("" when it is not reported). RequestPermission,
// run later by the SDK, picks it up by that id (metaPermission).
func (a *adapter) announceLocked(req acpsdk.RequestPermissionRequest) string {
	if a.turn == "" {
		return "" // RequestPermission answers cancelled
	}
	a.closeBlockLocked()
	a.permN++
	id := a.turn + ":perm-" + strconv.Itoa(a.permN)
	toolID := a.toolID(req.ToolCall.ToolCallId)
	title := "Permission requested"
	if req.ToolCall.Title != nil && *req.ToolCall.Title != "" {
		title = *req.ToolCall.Title
	}
	if a.tools[toolID] == nil {
		var kind acpsdk.ToolKind
		if req.ToolCall.Kind != nil {
			kind = *req.ToolCall.Kind
		}
		a.startToolLocked(toolID, kind, title, toolUpdate{input: req.ToolCall.RawInput, locations: req.ToolCall.Locations, content: req.ToolCall.Content})
	}
	p := &pendingPermission{toolID: toolID, options: map[string]acpsdk.PermissionOption{}, answer: make(chan protocol.Command, 1)}
	opts := make([]protocol.PermissionOption, 0, len(req.Options))
	var unknown []string
	for _, o := range req.Options {
		kind, ok := optionKind(o.Kind)
		if !ok {
			// Rein knows only allows and rejects, and the reducer, the
			// web view and rein approve/deny act on the kind: calling
			// this option either could approve what the user meant to
			// refuse, or report denied what the agent goes on to do.
			// Left out, with a notice; the other options still work.
			unknown = append(unknown, strconv.Quote(o.Name)+" ("+string(o.Kind)+")")
			continue
		}
		oid := optionID(string(o.OptionId), p.options)
		p.options[oid] = o
		opts = append(opts, protocol.PermissionOption{ID: oid, Name: o.Name, Kind: kind})
	}
	if len(unknown) > 0 {
		a.log.Warn("acp permission options of unknown kinds left out", "requestId", id, "options", unknown)
		a.emit(protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelWarning, NoticeCode: NoticeOptionsLeftOut,
			Message: "the agent offered permission options of a kind Rein does not know, left out (answer with another option, or dismiss): " + strings.Join(unknown, ", ")})
	}
	a.perms[id] = p
	a.emit(protocol.Event{Type: protocol.EventPermissionRequested, ID: id, ToolCallID: toolID, Title: title, Input: rawJSON(req.ToolCall.RawInput), Options: opts})
	if a.aborted {
		// Asked after the abort: answered cancelled at once.
		a.cancelPermissionsLocked()
	}
	return id
}

// RequestPermission waits for the answer to the request the ordered
// reader announced (a permission_response command, or an abort, which
// answers cancelled).
func (a *adapter) RequestPermission(ctx context.Context, req acpsdk.RequestPermissionRequest) (acpsdk.RequestPermissionResponse, error) {
	// The id the ordered reader put in the request it passed on: the SDK
	// runs handlers in goroutines of their own, so two requests about
	// the same tool call may reach here in either order.
	id, _ := req.Meta[metaPermission].(string)
	a.mu.Lock()
	p := a.perms[id]
	a.mu.Unlock()
	if p == nil {
		return acpsdk.RequestPermissionResponse{Outcome: acpsdk.NewRequestPermissionOutcomeCancelled()}, nil
	}

	var c protocol.Command
	select {
	case c = <-p.answer:
	case <-ctx.Done():
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.perms, id)
	if ctx.Err() != nil {
		// The agent withdrew the request ($/cancel_request) or its
		// connection ended. An answer that came at the same moment (the
		// select above picks at random among those ready) never reaches
		// it: the request reads cancelled, and the answer is told.
		if c.ID == 0 {
			select {
			case c = <-p.answer:
			default:
			}
		}
		if c.Type == protocol.CommandPermissionResponse && c.ID != 0 {
			a.log.Warn("permission answer for a withdrawn request; not applied", "id", c.ID, "requestId", id)
			defer a.emit(notapplied.Notice(c, notapplied.Ended))
		}
		c = protocol.Command{Outcome: protocol.OutcomeCancelled}
	}
	opt, known := p.options[c.OptionID]
	t := a.tools[p.toolID]
	if c.Outcome == protocol.OutcomeCancelled || !known {
		if c.Outcome != protocol.OutcomeCancelled {
			a.log.Warn("permission_response names an unknown option; cancelling", "requestId", id, "optionId", c.OptionID)
		}
		if t != nil && !t.ended && t.forced == "" {
			t.forced = protocol.ToolCancelled
		}
		a.emit(protocol.Event{Type: protocol.EventPermissionResolved, ID: id, Outcome: protocol.OutcomeCancelled})
		return acpsdk.RequestPermissionResponse{Outcome: acpsdk.NewRequestPermissionOutcomeCancelled()}, nil
	}
	if t != nil && !t.ended && (opt.Kind == acpsdk.PermissionOptionKindRejectOnce || opt.Kind == acpsdk.PermissionOptionKindRejectAlways) {
		t.forced = protocol.ToolDenied
	}
	a.emit(protocol.Event{Type: protocol.EventPermissionResolved, ID: id, Outcome: protocol.OutcomeSelected, OptionID: c.OptionID})
	return acpsdk.RequestPermissionResponse{Outcome: acpsdk.NewRequestPermissionOutcomeSelected(opt.OptionId)}, nil
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
