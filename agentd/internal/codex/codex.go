package codex

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/rein-ai/rein/agentd/internal/stdinqueue"
	"github.com/rein-ai/rein/protocol"
)

// Protocol is the agent.protocol value of Codex agents.
const Protocol = "codex"

// clientVersion is sent as clientInfo.version in initialize.
const clientVersion = "1"

// Options wires one run of `codex app-server`.
type Options struct {
	Stdin  io.WriteCloser
	Stdout io.Reader
	// Commands: prompt, abort, permission_response and shutdown.
	Commands <-chan protocol.Command
	// Emit receives every event in order; it may block (backpressure
	// then reaches the app-server through its stdout pipe).
	Emit func(context.Context, protocol.Event) error
	// Cwd is the thread's working directory.
	Cwd    string
	Logger *slog.Logger
	// Transcript, when set, receives one JSON line per message read from
	// or written to the app-server and per command handled, in the order
	// the adapter processed them: replaying it reproduces the events.
	Transcript io.Writer
	// Resume is a thread id to resume with thread/resume ("" starts a new
	// thread). If the app-server cannot resume it, a new thread starts
	// and a warning notice says so.
	Resume string
	// Conversation, when set, gets the id of the thread the run is in.
	Conversation func(id string)
}

// Serve initializes the app-server, starts one thread and relays commands
// and notifications until the app-server's stdout ends (nil) or it refuses
// the handshake (an error; the supervisor then stops and restarts it). It
// has waited for the goroutine it started when it returns.
func Serve(ctx context.Context, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &adapter{
		ctx: ctx, opts: opts, log: log,
		pending: map[int64]func(json.RawMessage, *rpcError){},
		perms:   map[string]*permission{},
		// Writes go through a queue: blocked in a write to an
		// app-server that no longer reads, Serve would stop taking its
		// stdout, whose end (which stops such an app-server) would then
		// go unread.
		stdin: stdinqueue.New(opts.Stdin, func(err error) {
			// The app-server is gone; its stdout ending ends Serve.
			log.Warn("write to codex app-server", "err", err)
		}),
	}
	defer a.stdin.Stop()

	in := make(chan *message)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { readMessages(opts.Stdout, in, stop, log) })
	defer func() {
		close(stop)
		wg.Wait()
	}()

	a.handshake()
	cmds := opts.Commands
	for {
		select {
		case c, ok := <-cmds:
			if !ok {
				cmds = nil
				continue
			}
			a.record("command", c)
			a.command(c)
		case m, ok := <-in:
			if !ok {
				return nil
			}
			a.record("from", json.RawMessage(m.raw))
			a.receive(m)
		}
		if a.fatal != nil {
			// Stop the app-server; the reader sees its stdout end.
			// Its stdout first: its end, read before then, is the
			// app-server's own (the supervisor's gone), not its answer
			// to its input closing.
			if c, ok := opts.Stdout.(io.Closer); ok {
				c.Close()
			}
			a.stdin.Stop()
			for range in {
			}
			return a.fatal
		}
	}
}

// adapter is the state of one app-server run. Only Serve's goroutine
// touches it.
type adapter struct {
	ctx   context.Context
	opts  Options
	log   *slog.Logger
	stdin *stdinqueue.Queue // the app-server's stdin

	nextID  int64
	pending map[int64]func(json.RawMessage, *rpcError)
	fatal   error

	thread string // "" until thread/start answered
	queue  []protocol.Command
	// closed: agentd is stopping and closed the app-server's input. A
	// turn may still complete, but a prompt queued behind it can no
	// longer reach the app-server: started, its turn_started would count
	// it as taken and it would be lost, while left alone it goes to the
	// next agentd.
	closed  bool
	cur     *turnState // the turn running, if any
	usage   *tokenBreakdown
	permSeq int
	perms   map[string]*permission // by Rein permission id
}

// turnState is one Rein turn and the Codex turn behind it.
type turnState struct {
	id      string // Rein turn id
	codexID string // "" until the app-server names it
	// aborted: the user aborted the turn. An abort asked before codexID
	// is known sends its interrupt when the id arrives.
	aborted bool
	items   map[string]*itemState
	// base is the thread's cumulative token usage before this turn: Rein
	// usage is per turn, Codex reports thread totals.
	base tokenBreakdown
	// reported: the turn had a token usage report.
	reported bool
}

// itemState is what the adapter remembers of an item while it is open.
type itemState struct {
	id       string // Rein id
	kind     string // item type
	streamed strings.Builder
	summary  bool // reasoning: a summary streamed (raw text is then not shown)
	lastPart int  // reasoning: index of the summary part streaming
	started  bool // tool_call_start sent
	// dismissed: its approval was answered as dismissed (a
	// permission_response cancelled, an abort) or withdrawn, so Codex
	// declining it means it never ran, not that anyone denied it.
	dismissed bool
}

func (a *adapter) emit(ev protocol.Event) {
	if err := a.opts.Emit(a.ctx, ev); err != nil {
		a.log.Warn("event not delivered", "type", ev.Type, "err", err)
	}
}

// record appends one transcript line: {"<dir>": payload}.
func (a *adapter) record(dir string, payload any) {
	if a.opts.Transcript == nil {
		return
	}
	b, err := json.Marshal(map[string]any{dir: payload})
	if err != nil {
		a.log.Warn("transcript", "err", err)
		return
	}
	if _, err := a.opts.Transcript.Write(append(b, '\n')); err != nil {
		a.log.Warn("transcript", "err", err)
	}
}

// send queues one message for the app-server's stdin.
func (a *adapter) send(m outgoing) {
	m.JSONRPC = "2.0"
	b, err := json.Marshal(m)
	if err != nil {
		a.log.Error("encode message for codex", "method", m.Method, "err", err)
		return
	}
	a.record("to", json.RawMessage(b))
	a.stdin.Write(append(b, '\n'))
}

// call sends a request; then runs when its answer arrives (on Serve's
// goroutine, like everything else).
func (a *adapter) call(method string, params any, then func(json.RawMessage, *rpcError)) {
	a.nextID++
	a.pending[a.nextID] = then
	a.send(outgoing{ID: idOf(a.nextID), Method: method, Params: params})
}

func (a *adapter) notify(method string, params any) {
	a.send(outgoing{Method: method, Params: params})
}

// handshake: initialize, initialized, thread/start; then agent_started and
// whatever prompts queued up meanwhile.
func (a *adapter) handshake() {
	a.call("initialize", map[string]any{
		"clientInfo": map[string]any{"name": "agentd", "title": "Rein agentd", "version": clientVersion},
		// thread/backgroundTerminals/clean is an experimental method.
		"capabilities": map[string]any{"experimentalApi": true},
	}, func(res json.RawMessage, rerr *rpcError) {
		if rerr != nil {
			a.fatal = fmt.Errorf("codex initialize: %w", rerr)
			return
		}
		var init initializeResult
		if err := json.Unmarshal(res, &init); err != nil {
			a.fatal = fmt.Errorf("codex initialize: decode answer: %w", err)
			return
		}
		info := protocol.AgentInfo{Name: "codex", Version: versionOf(init.UserAgent), Protocol: Protocol}
		a.notify("initialized", nil)
		if a.opts.Resume == "" {
			a.startThread(info)
			return
		}
		// excludeTurns: the history is the thread's, not to be shown again.
		a.call("thread/resume", map[string]any{"threadId": a.opts.Resume, "cwd": a.opts.Cwd, "excludeTurns": true}, func(res json.RawMessage, rerr *rpcError) {
			var ts threadStartResult
			var err error
			switch {
			case rerr != nil:
				err = rerr
			case json.Unmarshal(res, &ts) != nil || ts.Thread.ID == "":
				err = errors.New("answer without a thread id")
			}
			if err != nil {
				a.log.Warn("codex thread/resume failed; starting a new thread", "thread", a.opts.Resume, "err", err)
				a.emit(protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelWarning, NoticeCode: NoticeResumeFailed,
					Message: "Codex could not resume the previous conversation (thread " + a.opts.Resume + "): " + err.Error() + "; a new conversation starts"})
				a.startThread(info)
				return
			}
			a.ready(info, ts)
		})
	})
}

// NoticeResumeFailed is the notice code when the previous thread could
// not be resumed and a new one started.
const NoticeResumeFailed = "conversation_not_resumed"

// startThread opens a new thread.
func (a *adapter) startThread(info protocol.AgentInfo) {
	a.call("thread/start", map[string]any{"cwd": a.opts.Cwd}, func(res json.RawMessage, rerr *rpcError) {
		if rerr != nil {
			a.fatal = fmt.Errorf("codex thread/start: %w", rerr)
			return
		}
		var ts threadStartResult
		if err := json.Unmarshal(res, &ts); err != nil || ts.Thread.ID == "" {
			a.fatal = fmt.Errorf("codex thread/start: answer without a thread id (%v)", err)
			return
		}
		a.ready(info, ts)
	})
}

// ready: the thread is open; report it and start queued prompts.
func (a *adapter) ready(info protocol.AgentInfo, ts threadStartResult) {
	a.thread = ts.Thread.ID
	if a.opts.Conversation != nil {
		a.opts.Conversation(a.thread)
	}
	a.emit(protocol.Event{Type: protocol.EventAgentStarted, Agent: &info, Model: ts.Model, Cwd: a.opts.Cwd})
	a.startNext()
}

// versionOf takes the Codex version out of a user agent such as
// "agentd/0.169.0 (Debian 12; x86_64) ...".
func versionOf(ua string) string {
	_, v, ok := strings.Cut(ua, "/")
	if !ok {
		return ""
	}
	v, _, _ = strings.Cut(v, " ")
	return v
}

// command handles one Rein command.
func (a *adapter) command(c protocol.Command) {
	switch c.Type {
	case protocol.CommandPrompt:
		// One turn at a time: a prompt during a turn waits for its end.
		a.queue = append(a.queue, c)
		a.startNext()
	case protocol.CommandAbort:
		a.abort()
	case protocol.CommandPermissionResponse:
		a.answer(c)
	case protocol.CommandShutdown:
		// The app-server exits when its stdin closes.
		a.closed = true
		a.stdin.Close()
	}
}

// startNext starts the next queued prompt when the thread is ready and no
// turn runs. agentd, not Codex, opens Rein turns; ids derive from the
// command id, unique in the session, so they stay unique across restarts.
func (a *adapter) startNext() {
	if a.thread == "" || a.cur != nil || len(a.queue) == 0 || a.closed {
		return
	}
	c := a.queue[0]
	a.queue = a.queue[1:]
	n := strconv.FormatInt(c.ID, 10)
	t := &turnState{id: "turn-" + n, items: map[string]*itemState{}}
	if a.usage != nil {
		t.base = *a.usage
	}
	a.cur = t
	a.emit(protocol.Event{Type: protocol.EventTurnStarted, TurnID: t.id, PromptID: "prompt-" + n, Source: protocol.SourceUser})
	a.emit(protocol.Event{Type: protocol.EventUserMessage, ID: "user-" + n, Text: c.Text, PromptID: "prompt-" + n})
	a.call("turn/start", map[string]any{
		"threadId": a.thread,
		"input":    []any{map[string]any{"type": "text", "text": c.Text, "text_elements": []any{}}},
	}, func(res json.RawMessage, rerr *rpcError) {
		if rerr != nil {
			a.endTurn(t, protocol.StopError, "codex turn/start: "+rerr.Message)
			return
		}
		var ts turnStartResult
		if err := json.Unmarshal(res, &ts); err != nil {
			a.log.Warn("codex turn/start: undecodable answer", "err", err)
			return
		}
		a.bind(t, ts.Turn.ID)
	})
}

// bind learns the Codex id of turn t, and sends an abort that waited for it.
func (a *adapter) bind(t *turnState, codexID string) {
	if t.codexID != "" || codexID == "" {
		return
	}
	t.codexID = codexID
	if t.aborted && a.cur == t {
		a.interrupt(t)
	}
}

// turnFor returns the running turn a notification about Codex turn id
// belongs to, or nil (a late message about a turn that ended).
func (a *adapter) turnFor(codexID string) *turnState {
	t := a.cur
	if t == nil {
		return nil
	}
	if t.codexID == "" {
		// Notifications may overtake turn/start's answer.
		a.bind(t, codexID)
	}
	if codexID != "" && t.codexID != codexID {
		return nil
	}
	return t
}

// abort interrupts the running turn. Pending approvals are answered
// "cancel" first: the app-server would otherwise keep waiting for them.
func (a *adapter) abort() {
	t := a.cur
	if t == nil {
		return
	}
	a.cancelPermissions()
	t.aborted = true
	if t.codexID == "" {
		return
	}
	a.interrupt(t)
}

// interrupt asks Codex to stop turn t, then to end its background
// terminals: an interrupted command lives on as one otherwise. (agentd
// kills what is left of the turn's processes after the turn ends.)
func (a *adapter) interrupt(t *turnState) {
	a.call("turn/interrupt", map[string]any{"threadId": a.thread, "turnId": t.codexID}, func(_ json.RawMessage, rerr *rpcError) {
		if rerr != nil {
			a.log.Warn("codex turn/interrupt", "err", rerr)
		}
		a.call("thread/backgroundTerminals/clean", map[string]any{"threadId": a.thread}, func(_ json.RawMessage, rerr *rpcError) {
			if rerr != nil {
				// Older app-servers lack it (0.169.0).
				a.log.Info("codex thread/backgroundTerminals/clean", "err", rerr)
			}
		})
	})
}

// endTurn reports the end of turn t. Items still open stay open: an
// interrupted item never completes, and turn_completed closes it.
func (a *adapter) endTurn(t *turnState, stop protocol.StopReason, errText string) {
	if a.cur != t {
		return
	}
	if t.aborted && stop != protocol.StopEndTurn {
		// The user stopped the turn: a turn Codex fails after the
		// interrupt (rather than ending it interrupted) was cancelled
		// too, as the other adapters say. Codex's message stays in the
		// event. A turn that completed before the interrupt landed did
		// complete.
		stop = protocol.StopCancelled
	}
	a.cancelPermissions()
	a.cur = nil
	a.emit(protocol.Event{Type: protocol.EventTurnCompleted, TurnID: t.id, StopReason: stop, Error: errText})
	a.startNext()
}

// receive handles one message from the app-server.
func (a *adapter) receive(m *message) {
	switch {
	case m.isRequest():
		a.request(m)
	case m.isNotification():
		a.notification(m)
	default:
		id, ok := answerID(m.ID)
		then := a.pending[id]
		if !ok || then == nil {
			a.log.Warn("codex answered an unknown request", "id", string(m.ID))
			return
		}
		delete(a.pending, id)
		then(m.Result, m.Error)
	}
}

func (a *adapter) notification(m *message) {
	switch m.Method {
	case "turn/started":
		var n turnNotification
		if a.decode(m, &n) && a.cur != nil {
			a.bind(a.cur, n.Turn.ID)
		}
	case "turn/completed":
		var n turnNotification
		if !a.decode(m, &n) {
			return
		}
		if t := a.turnFor(n.Turn.ID); t != nil {
			stop, errText := stopReason(n.Turn)
			a.endTurn(t, stop, errText)
		}
	case "item/started", "item/completed":
		var n itemNotification
		if !a.decode(m, &n) {
			return
		}
		if t := a.turnFor(n.TurnID); t != nil {
			a.item(t, m.Method == "item/completed", n.Item)
		}
	case "item/agentMessage/delta", "item/reasoning/summaryTextDelta", "item/reasoning/textDelta",
		"item/commandExecution/outputDelta":
		var n deltaNotification
		if !a.decode(m, &n) {
			return
		}
		if t := a.turnFor(n.TurnID); t != nil {
			a.delta(t, m.Method, n)
		}
	case "turn/plan/updated":
		var n planNotification
		if !a.decode(m, &n) {
			return
		}
		if t := a.turnFor(n.TurnID); t != nil {
			entries := make([]protocol.PlanEntry, 0, len(n.Plan))
			for _, s := range n.Plan {
				entries = append(entries, protocol.PlanEntry{Content: s.Step, Status: planStatus(s.Status)})
			}
			a.emit(protocol.Event{Type: protocol.EventPlanUpdated, ID: t.id + ":plan", Entries: entries})
		}
	case "thread/tokenUsage/updated":
		var n tokenUsageNotification
		if a.decode(m, &n) {
			a.tokenUsage(n)
		}
	case "error":
		var n errorNotification
		if a.decode(m, &n) && n.WillRetry {
			// A final error ends the turn as failed, carrying the
			// message; a retried one is only worth a notice.
			a.emit(protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelWarning, Message: n.Error.Message, NoticeCode: "codex_retry"})
		}
	case "warning":
		var n warningNotification
		if a.decode(m, &n) && n.Message != "" {
			a.emit(protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelWarning, Message: n.Message, NoticeCode: "codex_warning"})
		}
	case "serverRequest/resolved":
		var n resolvedNotification
		if a.decode(m, &n) {
			a.resolvedElsewhere(n.RequestID)
		}
	case "configWarning", "deprecationNotice":
		// Startup advice about the sandbox's setup: for the operator's
		// log, not the transcript.
		a.log.Warn("codex "+m.Method, "params", string(m.Params))
	default:
		a.log.Debug("ignoring codex notification", "method", m.Method)
	}
}

func (a *adapter) decode(m *message, v any) bool {
	if err := json.Unmarshal(m.Params, v); err != nil {
		a.log.Warn("undecodable codex message", "method", m.Method, "err", err)
		return false
	}
	return true
}

// stopReason maps a completed Codex turn.
func stopReason(t turn) (protocol.StopReason, string) {
	switch t.Status {
	case "completed":
		return protocol.StopEndTurn, ""
	case "interrupted":
		return protocol.StopCancelled, ""
	}
	msg := "codex turn " + t.Status
	if t.Error != nil {
		msg = t.Error.Message
		if string(t.Error.CodexErrorInfo) == `"contextWindowExceeded"` {
			return protocol.StopMaxTokens, msg
		}
	}
	return protocol.StopError, msg
}

func planStatus(s string) protocol.PlanStatus {
	switch s {
	case "inProgress":
		return protocol.PlanInProgress
	case "completed":
		return protocol.PlanCompleted
	}
	return protocol.PlanPending
}

// tokenUsage reports the running turn's usage: the thread's totals minus
// those before the turn, and the context the last request filled.
func (a *adapter) tokenUsage(n tokenUsageNotification) {
	total := n.TokenUsage.Total
	a.usage = &total
	if t := a.cur; t != nil && t.codexID == "" && n.TurnID != "" {
		// Not this turn's (whose notifications follow turn/started): a
		// resumed thread reports its totals so far, for an earlier
		// turn, which is this turn's baseline. Binding the turn to it
		// would lose every later notification of the turn.
		t.base = total
		return
	}
	t := a.turnFor(n.TurnID)
	if t == nil {
		return
	}
	if !t.reported {
		// The turn's first report covers one request (last): what the
		// total holds beyond it came before the turn. A turn ended by a
		// denial has its usage reported only with the next turn's.
		t.reported = true
		t.base = maxUsage(t.base, subUsage(total, n.TokenUsage.Last))
	}
	in := total.InputTokens - t.base.InputTokens
	out := total.OutputTokens - t.base.OutputTokens
	cached := total.CachedInputTokens - t.base.CachedInputTokens
	used := n.TokenUsage.Last.TotalTokens
	a.emit(protocol.Event{
		Type: protocol.EventUsageUpdated, InputTokens: &in, OutputTokens: &out, CachedInputTokens: &cached,
		ContextUsed: &used, ContextSize: n.TokenUsage.ModelContextWindow,
	})
}

func subUsage(x, y tokenBreakdown) tokenBreakdown {
	return tokenBreakdown{
		TotalTokens: x.TotalTokens - y.TotalTokens, InputTokens: x.InputTokens - y.InputTokens,
		CachedInputTokens: x.CachedInputTokens - y.CachedInputTokens, OutputTokens: x.OutputTokens - y.OutputTokens,
	}
}

func maxUsage(x, y tokenBreakdown) tokenBreakdown {
	return tokenBreakdown{
		TotalTokens: max(x.TotalTokens, y.TotalTokens), InputTokens: max(x.InputTokens, y.InputTokens),
		CachedInputTokens: max(x.CachedInputTokens, y.CachedInputTokens), OutputTokens: max(x.OutputTokens, y.OutputTokens),
	}
}

// itemID namespaces a Codex item id by turn (item ids repeat across turns)
// and keeps it within the event id charset and length.
func itemID(t *turnState, id string) string {
	return t.id + ":" + protocol.SanitizeEventID(id, 100)
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
