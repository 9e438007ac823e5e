package acp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd/internal/acp"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/agentd/internal/notapplied"
	"github.com/rein-ai/rein/protocol"
)

// peer is a scripted ACP agent: the test writes what the agent says and
// reads what agentd's adapter sends it, line by line.
type peer struct {
	t    *testing.T
	out  *io.PipeWriter // the agent's stdout
	from chan map[string]json.RawMessage
	cmds chan protocol.Command
	done chan error

	mu      sync.Mutex
	evs     []protocol.Event
	changed chan struct{}
	// onEmit, when set, sees each event as Serve emits it, first.
	onEmit func(protocol.Event)
	// patience, when set, replaces fakeserver.WaitTimeout in wait.
	patience time.Duration
}

// startPeer runs acp.Serve against a scripted agent and answers the
// handshake (initialize, session/new offering modes "ask" and "auto").
func startPeer(t *testing.T, mode string) *peer {
	t.Helper()
	return startPeerWith(t, acp.Options{Mode: mode})
}

// startPeerWith is startPeer with opts (see launchPeer).
func startPeerWith(t *testing.T, opts acp.Options) *peer {
	t.Helper()
	p := launchPeer(t, opts)
	id, _ := p.expect("initialize")
	p.reply(id, map[string]any{"protocolVersion": 1, "agentInfo": map[string]any{"name": "fake", "version": "1"}})
	id, _ = p.expect("session/new")
	p.reply(id, map[string]any{"sessionId": "s1", "modes": map[string]any{
		"currentModeId": "ask", "availableModes": []any{map[string]any{"id": "ask", "name": "Ask"}, map[string]any{"id": "auto", "name": "Auto"}},
	}})
	return p
}

// launchPeer runs acp.Serve with opts (the pipes, commands, Emit, name,
// cwd and, unless opts has one, logger set here) against a scripted agent that has not yet
// answered anything.
func launchPeer(t *testing.T, opts acp.Options) *peer {
	t.Helper()
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	p := &peer{
		t: t, out: stdoutW, from: make(chan map[string]json.RawMessage, 64),
		cmds: make(chan protocol.Command), done: make(chan error, 1), changed: make(chan struct{}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(p.from)
		sc := bufio.NewScanner(stdinR)
		for sc.Scan() {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("adapter sent %q: %v", sc.Text(), err)
				continue
			}
			p.from <- m
		}
	})
	wg.Go(func() {
		opts.Stdin, opts.Stdout, opts.Commands, opts.Emit = stdinW, stdoutR, p.cmds, p.emit
		opts.Name, opts.Cwd = "fake", "/work"
		if opts.Logger == nil {
			opts.Logger = fakeserver.Logger(t, slog.LevelDebug)
		}
		p.done <- acp.Serve(ctx, opts)
	})
	t.Cleanup(func() {
		stdoutW.Close()
		cancel()
		stdinR.Close()
		for range p.from {
		}
		wg.Wait()
	})
	return p
}

func (p *peer) emit(_ context.Context, ev protocol.Event) error {
	if p.onEmit != nil {
		p.onEmit(ev)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.evs = append(p.evs, ev)
	close(p.changed)
	p.changed = make(chan struct{})
	return nil
}

// next returns the adapter's next message.
func (p *peer) next() map[string]json.RawMessage {
	p.t.Helper()
	select {
	case m, ok := <-p.from:
		if !ok {
			p.t.Fatal("the adapter closed the agent's stdin")
		}
		return m
	case <-time.After(fakeserver.WaitTimeout):
		p.t.Fatal("the adapter sent nothing")
	}
	return nil
}

// expect reads the adapter's next message, which must call method.
func (p *peer) expect(method string) (id, params json.RawMessage) {
	p.t.Helper()
	m := p.next()
	var got string
	_ = json.Unmarshal(m["method"], &got)
	if got != method {
		p.t.Fatalf("adapter sent %s, want a %s message", m, method)
	}
	return m["id"], m["params"]
}

// expectAnswer reads the adapter's answer to the request with id.
func (p *peer) expectAnswer(id int) json.RawMessage {
	p.t.Helper()
	m := p.next()
	if string(m["id"]) != strings.TrimSpace(mustJSON(p.t, id)) || m["method"] != nil {
		p.t.Fatalf("adapter sent %s, want the answer to request %d", m, id)
	}
	return m["result"]
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (p *peer) send(v any) {
	p.t.Helper()
	if _, err := io.WriteString(p.out, mustJSON(p.t, v)+"\n"); err != nil {
		p.t.Fatalf("write to the adapter: %v", err)
	}
}

func (p *peer) reply(id json.RawMessage, result any) {
	p.t.Helper()
	p.send(map[string]any{"jsonrpc": "2.0", "id": id, "result": result})
}

// update sends a session/update notification.
func (p *peer) update(u map[string]any) {
	p.t.Helper()
	p.send(updateMessage(u))
}

// updateMessage is the session/update notification carrying u.
func updateMessage(u map[string]any) map[string]any {
	return map[string]any{"jsonrpc": "2.0", "method": "session/update", "params": map[string]any{"sessionId": "s1", "update": u}}
}

func chunk(text string) map[string]any {
	return map[string]any{"sessionUpdate": "agent_message_chunk", "content": map[string]any{"type": "text", "text": text}}
}

// askPermission sends session/request_permission with request id for the
// tool call toolID (allow_once "yes", reject_once "no").
func (p *peer) askPermission(id int, toolID string) {
	p.t.Helper()
	p.send(map[string]any{"jsonrpc": "2.0", "id": id, "method": "session/request_permission", "params": map[string]any{
		"sessionId": "s1",
		"toolCall":  map[string]any{"toolCallId": toolID, "title": "run ls", "kind": "execute", "status": "pending", "rawInput": map[string]any{"command": "ls"}},
		"options": []any{
			map[string]any{"optionId": "yes", "name": "Allow", "kind": "allow_once"},
			map[string]any{"optionId": "no", "name": "Reject", "kind": "reject_once"},
		},
	}})
}

// prompt sends a prompt command and returns the session/prompt request id.
func (p *peer) prompt(cmdID int64, text string) json.RawMessage {
	p.t.Helper()
	p.cmds <- protocol.Command{ID: cmdID, Type: protocol.CommandPrompt, Text: text}
	id, _ := p.expect("session/prompt")
	return id
}

// wait returns the events once cond holds.
func (p *peer) wait(what string, cond func([]protocol.Event) bool) []protocol.Event {
	p.t.Helper()
	patience := fakeserver.WaitTimeout
	if p.patience > 0 {
		patience = p.patience
	}
	deadline := time.NewTimer(patience)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		evs, changed := append([]protocol.Event(nil), p.evs...), p.changed
		p.mu.Unlock()
		if cond(evs) {
			return evs
		}
		select {
		case <-changed:
		case <-deadline.C:
			p.t.Fatalf("waiting for %s; events:\n%s", what, fakeserver.Format(evs))
		}
	}
}

// untilDeadline is the time left before t's test binary times out, less
// a margin so that a wait fails with its events listed first; 10 minutes
// if it has no deadline.
func untilDeadline(t *testing.T) time.Duration {
	dl, ok := t.Deadline()
	if !ok {
		return 10 * time.Minute
	}
	return max(time.Until(dl)*9/10, fakeserver.WaitTimeout)
}

func has(t protocol.EventType) func([]protocol.Event) bool {
	return func(evs []protocol.Event) bool { return fakeserver.Count(evs, t) > 0 }
}

func count(t protocol.EventType, n int) func([]protocol.Event) bool {
	return func(evs []protocol.Event) bool { return fakeserver.Count(evs, t) >= n }
}

// turnEvents are the events after agent_started.
func turnEvents(evs []protocol.Event) string {
	var out []protocol.Event
	for _, ev := range evs {
		if ev.Type != protocol.EventAgentStarted {
			out = append(out, ev)
		}
	}
	return fakeserver.Format(out)
}

// A permission request the agent sends right after text must land after
// that text, although the SDK runs requests in goroutines of their own.
// Many turns, since the race this guards against does not lose every time.
func TestPermissionRequestFollowsEarlierUpdates(t *testing.T) {
	p := startPeer(t, "")
	for i := range 40 {
		n := int64(i + 1)
		turn := "turn-" + mustJSON(t, n)
		pid := p.prompt(n, "go")
		p.update(chunk("I will run ls."))
		p.update(map[string]any{"sessionUpdate": "tool_call", "toolCallId": "t1", "title": "ls", "kind": "execute", "status": "pending"})
		p.askPermission(100+i, "t1")
		evs := p.wait("the permission request", count(protocol.EventPermissionRequested, i+1))
		var order []protocol.EventType
		for _, ev := range evs {
			if strings.HasPrefix(ev.ID, turn+":") && ev.Type != protocol.EventToolCallUpdate {
				order = append(order, ev.Type)
			}
		}
		want := []protocol.EventType{protocol.EventTextDelta, protocol.EventTextEnd, protocol.EventToolCallStart, protocol.EventPermissionRequested}
		if mustJSON(t, order) != mustJSON(t, want) {
			t.Fatalf("turn %d: events %v, want %v", n, order, want)
		}
		p.cmds <- protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: turn + ":perm-1", OptionID: "yes"}
		p.expectAnswer(100 + i)
		p.reply(pid, map[string]any{"stopReason": "end_turn"})
		p.wait("the turn's end", count(protocol.EventTurnCompleted, i+1))
	}
}

// Usage and command list updates do not end the text being streamed;
// usage from usage_update and the prompt's result reaches Rein. ACP's
// inputTokens leaves out the cached tokens (totalTokens adds them), Rein's
// counts them, as the Claude Code and Codex adapters do.
func TestUsageKeepsTextBlockAndIsMapped(t *testing.T) {
	p := startPeer(t, "")
	// A first turn costs 0.25: Rein's cost is per turn.
	pid := p.prompt(1, "first")
	p.update(map[string]any{"sessionUpdate": "usage_update", "used": 1, "size": 100, "cost": map[string]any{"amount": 0.25, "currency": "USD"}})
	p.reply(pid, map[string]any{"stopReason": "end_turn"})
	p.wait("the first turn's end", has(protocol.EventTurnCompleted))
	p.mu.Lock()
	p.evs = nil
	p.mu.Unlock()

	pid = p.prompt(2, "hi")
	p.update(chunk("Hello, "))
	p.update(map[string]any{"sessionUpdate": "usage_update", "used": 40, "size": 1000, "cost": map[string]any{"amount": 0.75, "currency": "USD"}})
	p.update(map[string]any{"sessionUpdate": "available_commands_update", "availableCommands": []any{}})
	p.update(chunk("world."))
	p.reply(pid, map[string]any{"stopReason": "end_turn", "usage": map[string]any{"inputTokens": 10, "outputTokens": 7, "cachedReadTokens": 20, "totalTokens": 37}})
	evs := p.wait("the turn's end", has(protocol.EventTurnCompleted))
	want := `{"type":"turn_started","turnId":"turn-2","promptId":"prompt-2","source":"user"}
{"type":"user_message","id":"user-2","promptId":"prompt-2","text":"hi"}
{"type":"text_delta","id":"turn-2:text-1","delta":"Hello, "}
{"type":"usage_updated","costUsd":0.5,"contextUsed":40,"contextSize":1000}
{"type":"text_delta","id":"turn-2:text-1","delta":"world."}
{"type":"text_end","id":"turn-2:text-1","text":"Hello, world."}
{"type":"usage_updated","inputTokens":30,"outputTokens":7,"cachedInputTokens":20}
{"type":"turn_completed","turnId":"turn-2","stopReason":"end_turn"}
`
	if got := turnEvents(evs); got != want {
		t.Errorf("events:\n got:\n%s\nwant:\n%s", got, want)
	}
}

// Tool output reaches the output field: streamed from codex-acp's
// _meta.terminal_output_delta, whole from content or rawOutput.
func TestToolOutput(t *testing.T) {
	p := startPeer(t, "")
	pid := p.prompt(1, "run")
	p.update(map[string]any{"sessionUpdate": "tool_call", "toolCallId": "a", "title": "echo hi", "kind": "execute", "status": "in_progress"})
	p.update(map[string]any{"sessionUpdate": "tool_call_update", "toolCallId": "a", "_meta": map[string]any{"terminal_output_delta": map[string]any{"terminal_id": "a", "data": "hi\n"}}})
	p.update(map[string]any{"sessionUpdate": "tool_call_update", "toolCallId": "a", "status": "completed", "rawOutput": map[string]any{"formatted_output": "hi\n", "exit_code": 0}})
	p.update(map[string]any{"sessionUpdate": "tool_call", "toolCallId": "b", "title": "cat f", "kind": "read", "status": "in_progress"})
	p.update(map[string]any{"sessionUpdate": "tool_call_update", "toolCallId": "b", "status": "completed",
		"content": []any{map[string]any{"type": "content", "content": map[string]any{"type": "text", "text": "line"}}}})
	p.reply(pid, map[string]any{"stopReason": "end_turn"})
	evs := p.wait("the turn's end", has(protocol.EventTurnCompleted))
	want := `{"type":"turn_started","turnId":"turn-1","promptId":"prompt-1","source":"user"}
{"type":"user_message","id":"user-1","promptId":"prompt-1","text":"run"}
{"type":"tool_call_start","id":"turn-1:a","name":"execute","kind":"execute","title":"echo hi"}
{"type":"tool_call_update","id":"turn-1:a","status":"running"}
{"type":"tool_output_delta","id":"turn-1:a","delta":"hi\n"}
{"type":"tool_call_end","id":"turn-1:a","status":"completed","output":"hi\n","result":{"exit_code":0,"formatted_output":"hi\n"}}
{"type":"tool_call_start","id":"turn-1:b","name":"read","kind":"read","title":"cat f"}
{"type":"tool_call_update","id":"turn-1:b","status":"running"}
{"type":"tool_call_update","id":"turn-1:b","content":[{"content":{"text":"line","type":"text"},"type":"content"}]}
{"type":"tool_call_end","id":"turn-1:b","status":"completed","output":"line"}
{"type":"turn_completed","turnId":"turn-1","stopReason":"end_turn"}
`
	if got := turnEvents(evs); got != want {
		t.Errorf("events:\n got:\n%s\nwant:\n%s", got, want)
	}
}

// After a reject the tool ends denied, after an abort cancelled, whatever
// final status the agent reports afterwards.
func TestToolStatusAfterDenyAndAbort(t *testing.T) {
	p := startPeer(t, "")
	pid := p.prompt(1, "deny")
	p.askPermission(7, "x")
	p.wait("the permission request", has(protocol.EventPermissionRequested))
	p.cmds <- protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "turn-1:perm-1", OptionID: "no"}
	if got := string(p.expectAnswer(7)); got != `{"outcome":{"optionId":"no","outcome":"selected"}}` {
		t.Errorf("answer = %s, want option no", got)
	}
	p.update(map[string]any{"sessionUpdate": "tool_call_update", "toolCallId": "x", "status": "failed"})
	p.reply(pid, map[string]any{"stopReason": "end_turn"})
	p.wait("the first turn's end", has(protocol.EventTurnCompleted))

	pid = p.prompt(2, "abort")
	p.update(map[string]any{"sessionUpdate": "tool_call", "toolCallId": "y", "title": "sleep 30", "kind": "execute", "status": "in_progress"})
	p.wait("the tool", count(protocol.EventToolCallStart, 2))
	p.cmds <- protocol.Command{Type: protocol.CommandAbort}
	p.expect("session/cancel")
	p.update(map[string]any{"sessionUpdate": "tool_call_update", "toolCallId": "y", "status": "completed"})
	p.reply(pid, map[string]any{"stopReason": "end_turn"})
	evs := p.wait("the second turn's end", count(protocol.EventTurnCompleted, 2))
	var ends []string
	for _, ev := range evs {
		if ev.Type == protocol.EventToolCallEnd || ev.Type == protocol.EventTurnCompleted {
			ends = append(ends, ev.ID+ev.TurnID+" "+string(ev.Status)+string(ev.StopReason))
		}
	}
	want := []string{"turn-1:x denied", "turn-1 end_turn", "turn-2:y cancelled", "turn-2 cancelled"}
	if mustJSON(t, ends) != mustJSON(t, want) {
		t.Errorf("ends = %q, want %q", ends, want)
	}
}

// A tool the user rejected (or an abort cancelled) that the agent never
// reports again ends with the turn, denied (cancelled); usage the agent
// gives only in the prompt result's _meta.quota (Gemini CLI) is mapped.
func TestSilentToolsEndWithTheTurnAndQuotaUsage(t *testing.T) {
	p := startPeer(t, "")
	pid := p.prompt(1, "deny")
	p.askPermission(7, "x")
	p.wait("the permission request", has(protocol.EventPermissionRequested))
	p.cmds <- protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "turn-1:perm-1", OptionID: "no"}
	p.expectAnswer(7)
	p.update(chunk("Not run."))
	p.reply(pid, map[string]any{"stopReason": "end_turn", "_meta": map[string]any{"quota": map[string]any{
		"token_count": map[string]any{"input_tokens": 100, "output_tokens": 12}}}})
	evs := p.wait("the turn's end", has(protocol.EventTurnCompleted))
	want := `{"type":"turn_started","turnId":"turn-1","promptId":"prompt-1","source":"user"}
{"type":"user_message","id":"user-1","promptId":"prompt-1","text":"deny"}
{"type":"tool_call_start","id":"turn-1:x","name":"execute","kind":"execute","title":"run ls","input":{"command":"ls"}}
{"type":"permission_requested","id":"turn-1:perm-1","title":"run ls","input":{"command":"ls"},"toolCallId":"turn-1:x","options":[{"id":"yes","name":"Allow","kind":"allow_once"},{"id":"no","name":"Reject","kind":"reject_once"}]}
{"type":"permission_resolved","id":"turn-1:perm-1","outcome":"selected","optionId":"no"}
{"type":"text_delta","id":"turn-1:text-1","delta":"Not run."}
{"type":"text_end","id":"turn-1:text-1","text":"Not run."}
{"type":"tool_call_end","id":"turn-1:x","status":"denied"}
{"type":"usage_updated","inputTokens":100,"outputTokens":12}
{"type":"turn_completed","turnId":"turn-1","stopReason":"end_turn"}
`
	if got := turnEvents(evs); got != want {
		t.Errorf("events:\n got:\n%s\nwant:\n%s", got, want)
	}

	pid = p.prompt(2, "abort")
	p.update(map[string]any{"sessionUpdate": "tool_call", "toolCallId": "y", "title": "sleep 30", "kind": "execute", "status": "in_progress"})
	p.wait("the tool", count(protocol.EventToolCallStart, 2))
	p.cmds <- protocol.Command{Type: protocol.CommandAbort}
	p.expect("session/cancel")
	p.reply(pid, map[string]any{"stopReason": "cancelled"})
	evs = p.wait("the second turn's end", count(protocol.EventTurnCompleted, 2))
	if !fakeserver.Has(evs, func(ev protocol.Event) bool {
		return ev.Type == protocol.EventToolCallEnd && ev.ID == "turn-2:y" && ev.Status == protocol.ToolCancelled
	}) {
		t.Errorf("the aborted tool did not end cancelled:\n%s", turnEvents(evs))
	}
}

// Options.Mode selects the session mode right after session/new; a mode
// the agent does not offer is an error naming it.
func TestSessionMode(t *testing.T) {
	p := startPeer(t, "auto")
	id, params := p.expect("session/set_mode")
	if got := string(params); got != `{"modeId":"auto","sessionId":"s1"}` {
		t.Errorf("set_mode params = %s", got)
	}
	p.reply(id, map[string]any{})
	p.wait("agent_started", has(protocol.EventAgentStarted))

	q := startPeer(t, "yolo")
	var err error
	select {
	case err = <-q.done:
	case <-time.After(fakeserver.WaitTimeout):
		t.Fatal("Serve did not refuse the unknown mode")
	}
	if err == nil || !strings.Contains(err.Error(), `mode "yolo"`) || !strings.Contains(err.Error(), "ask, auto") {
		t.Errorf("Serve = %v, want an error naming mode yolo and the modes offered", err)
	}
	if errors.Is(err, context.Canceled) {
		t.Errorf("Serve = %v", err)
	}
}

// TestLoadSession: with a session to resume, the adapter loads it with
// session/load when the agent advertises loadSession (the history the
// agent replays is not reported again) and opens a new session with a
// warning notice when it does not or the load fails. Either way the
// session the run is in is reported.
func TestLoadSession(t *testing.T) {
	tests := []struct {
		name     string
		canLoad  bool
		loadErr  bool
		wantSess string
	}{
		{"loaded", true, false, "old"},
		{"load refused", true, true, "s1"},
		{"no loadSession capability", false, false, "s1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var reported []string
			p := launchPeer(t, acp.Options{Resume: "old", Conversation: func(id string) {
				mu.Lock()
				defer mu.Unlock()
				reported = append(reported, id)
			}})
			id, _ := p.expect("initialize")
			p.reply(id, map[string]any{"protocolVersion": 1, "agentCapabilities": map[string]any{"loadSession": tt.canLoad}})
			if tt.canLoad {
				id, params := p.expect("session/load")
				if got := string(params); got != `{"cwd":"/work","mcpServers":[],"sessionId":"old"}` {
					t.Errorf("session/load params = %s", got)
				}
				// The agent replays the history before answering.
				p.send(map[string]any{"jsonrpc": "2.0", "method": "session/update", "params": map[string]any{"sessionId": "old", "update": chunk("earlier answer")}})
				if tt.loadErr {
					p.send(map[string]any{"jsonrpc": "2.0", "id": id, "error": map[string]any{"code": -32002, "message": "session not found"}})
				} else {
					p.reply(id, map[string]any{})
				}
			}
			if tt.wantSess == "s1" {
				id, _ := p.expect("session/new")
				p.reply(id, map[string]any{"sessionId": "s1"})
			}
			evs := p.wait("agent_started", has(protocol.EventAgentStarted))
			if fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventTextDelta }) {
				t.Errorf("the replayed history was reported:\n%s", fakeserver.Format(evs))
			}
			notice := fakeserver.Has(evs, func(ev protocol.Event) bool {
				return ev.Type == protocol.EventNotice && ev.Level == protocol.LevelWarning && ev.NoticeCode == acp.NoticeResumeFailed
			})
			if notice != (tt.wantSess != "old") {
				t.Errorf("resume-failed notice %v; events:\n%s", notice, fakeserver.Format(evs))
			}
			mu.Lock()
			got := strings.Join(reported, ",")
			mu.Unlock()
			if got != tt.wantSess {
				t.Errorf("reported sessions %q; want %q", got, tt.wantSess)
			}
			// The next prompt goes to that session.
			p.cmds <- protocol.Command{ID: 1, Type: protocol.CommandPrompt, Text: "hi"}
			_, params := p.expect("session/prompt")
			if !strings.Contains(string(params), `"sessionId":"`+tt.wantSess+`"`) {
				t.Errorf("session/prompt params = %s; want session %s", params, tt.wantSess)
			}
		})
	}
}

// A session/update may carry a whole file (an edit's diff) or a command's
// whole output, over the 10 MiB the SDK reads in one line. agentd maps
// updates itself, so such a line costs nothing: the tool ends as the agent
// said and the turn goes on.
func TestLongUpdateLines(t *testing.T) {
	p := startPeer(t, "")
	// Mapping this line is seconds of CPU in encoding/json under the race
	// detector (the SDK's union types decode it several times over) and
	// took over the 30 s of WaitTimeout beside the server's suite: the
	// safety net here is the test binary's deadline.
	p.patience = untilDeadline(t)
	pid := p.prompt(1, "write")
	p.update(map[string]any{"sessionUpdate": "tool_call", "toolCallId": "w", "title": "Write big.txt", "kind": "edit", "status": "in_progress"})
	big := mustJSON(t, updateMessage(map[string]any{"sessionUpdate": "tool_call_update", "toolCallId": "w", "status": "completed",
		"content": []any{map[string]any{"type": "diff", "path": "/work/big.txt", "newText": strings.Repeat("x", 10<<20)}}}))
	if len(big) <= 10<<20 {
		t.Fatalf("the long line is %d bytes, not over the SDK's 10 MiB", len(big))
	}
	p.writeAll(big, mustJSON(t, updateMessage(chunk("Done."))),
		mustJSON(t, map[string]any{"jsonrpc": "2.0", "id": pid, "result": map[string]any{"stopReason": "end_turn"}}))
	evs := p.wait("the turn's end", has(protocol.EventTurnCompleted))
	want := []string{"tool_call_end turn-1:w completed", "text_end turn-1:text-1 Done.", "turn_completed turn-1 end_turn"}
	if got := turnEnds(evs); mustJSON(t, got) != mustJSON(t, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// One session/update over agentd's own limit (64 MiB; 1 MiB here, so the
// test writes 2 MiB, not 65) is dropped, like the Codex and Claude Code
// adapters drop theirs, and the lines after it are still read: the agent
// is not left blocked on a pipe nobody reads, to be killed with its turn
// failed.
func TestUpdateLineOverTheLimitIsDropped(t *testing.T) {
	acp.SetMaxLine(t, 1<<20)
	p := startPeer(t, "")
	pid := p.prompt(1, "cat")
	p.update(map[string]any{"sessionUpdate": "tool_call", "toolCallId": "c", "title": "cat huge", "kind": "execute", "status": "in_progress"})
	p.writeAll(mustJSON(t, updateMessage(map[string]any{"sessionUpdate": "tool_call_update", "toolCallId": "c", "status": "completed", "rawOutput": strings.Repeat("y", 2<<20)})),
		mustJSON(t, updateMessage(chunk("Done."))),
		mustJSON(t, map[string]any{"jsonrpc": "2.0", "id": pid, "result": map[string]any{"stopReason": "end_turn"}}))
	evs := p.wait("the turn's end", has(protocol.EventTurnCompleted))
	// The tool's end was in the dropped line: the mapper sends none.
	want := []string{"text_end turn-1:text-1 Done.", "turn_completed turn-1 end_turn"}
	if got := turnEnds(evs); mustJSON(t, got) != mustJSON(t, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// writeAll writes lines as the agent's stdout from a goroutine: an adapter
// that stops reading would otherwise block the test on the pipe rather
// than fail it.
func (p *peer) writeAll(lines ...string) {
	go func() {
		for _, l := range lines {
			if _, err := io.WriteString(p.out, l+"\n"); err != nil {
				return
			}
		}
	}()
}

// turnEnds summarises the tool_call_end, text_end and turn_completed
// events of evs.
func turnEnds(evs []protocol.Event) []string {
	var got []string
	for _, ev := range evs {
		switch ev.Type {
		case protocol.EventToolCallEnd, protocol.EventTextEnd, protocol.EventTurnCompleted:
			got = append(got, string(ev.Type)+" "+ev.ID+ev.TurnID+" "+string(ev.Status)+string(ev.StopReason)+ev.Text)
		}
	}
	return got
}

// Values outside Rein's enums, which a newer ACP agent may send (ACP
// reserves other plan statuses and option kinds for future versions and
// "_"-prefixed ones for extensions), must not make an event the server
// refuses: a refused plan_updated loses the plan, a refused
// permission_requested a question nobody sees while the agent waits. An
// unknown plan status reads pending and says what the agent said; an
// option of an unknown kind is left out (Rein could only call it an allow
// or a reject, which it may not be), with a notice naming it, and the
// other options still reach the agent.
func TestUnknownEnumValues(t *testing.T) {
	p := startPeer(t, "")
	pid := p.prompt(1, "plan")
	p.update(map[string]any{"sessionUpdate": "plan", "entries": []any{
		map[string]any{"content": "read", "status": "completed", "priority": "high"},
		map[string]any{"content": "skip", "status": "cancelled", "priority": "urgent"},
	}})
	p.send(map[string]any{"jsonrpc": "2.0", "id": 9, "method": "session/request_permission", "params": map[string]any{
		"sessionId": "s1",
		"toolCall":  map[string]any{"toolCallId": "x", "title": "edit f", "kind": "edit", "status": "pending"},
		"options": []any{
			map[string]any{"optionId": "yes", "name": "Allow", "kind": "allow_once"},
			map[string]any{"optionId": "project", "name": "Allow for this project", "kind": "_allow_project"},
			map[string]any{"optionId": "no", "name": "Reject", "kind": "reject_once"},
		},
	}})
	evs := p.wait("the permission request", has(protocol.EventPermissionRequested))
	p.cmds <- protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "turn-1:perm-1", OptionID: "no"}
	if got := string(p.expectAnswer(9)); got != `{"outcome":{"optionId":"no","outcome":"selected"}}` {
		t.Errorf("answer = %s, want option no", got)
	}
	p.reply(pid, map[string]any{"stopReason": "end_turn"})
	evs = p.wait("the turn's end", has(protocol.EventTurnCompleted))
	for _, ev := range evs {
		b, err := ev.MarshalJSON()
		if err == nil {
			_, err = protocol.DecodeEvents(b)
		}
		if err != nil {
			t.Errorf("%s event the server refuses: %v\n%s", ev.Type, err, b)
		}
	}
	var got []string
	for _, ev := range evs {
		switch ev.Type {
		case protocol.EventPlanUpdated, protocol.EventPermissionRequested, protocol.EventNotice:
			got = append(got, turnEvents([]protocol.Event{ev}))
		}
	}
	want := []string{
		`{"type":"plan_updated","id":"turn-1:plan","entries":[{"content":"read","status":"completed","priority":"high"},{"content":"skip (cancelled)","status":"pending","priority":"urgent"}]}` + "\n",
		`{"type":"notice","level":"warning","message":"the agent offered permission options of a kind Rein does not know, left out (answer with another option, or dismiss): \"Allow for this project\" (_allow_project)","code":"permission_options_left_out"}` + "\n",
		`{"type":"permission_requested","id":"turn-1:perm-1","title":"edit f","toolCallId":"turn-1:x","options":[{"id":"yes","name":"Allow","kind":"allow_once"},{"id":"no","name":"Reject","kind":"reject_once"}]}` + "\n",
	}
	if mustJSON(t, got) != mustJSON(t, want) {
		t.Errorf("events:\n got: %s\nwant: %s", got, want)
	}
}

// A prompt queued behind a turn is not started when the agent died right
// after answering that turn: its turn_started would count it as taken, so
// the agent agentd starts next would never get it, and the turn would
// just fail. It stays untaken, and the supervisor hands it to the next
// agent. Here the agent's output ends while the first turn's end is
// being emitted, before Serve turns to the queue.
func TestQueuedPromptNotStartedOnDeadAgent(t *testing.T) {
	closed := make(chan struct{})
	// The SDK logs "connection closed" once the connection is done.
	log := slog.New(&connWatch{Handler: fakeserver.Logger(t, slog.LevelDebug).Handler(), closed: closed, once: &sync.Once{}})
	p := startPeerWith(t, acp.Options{Logger: log})
	pid := p.prompt(1, "first")
	p.cmds <- protocol.Command{ID: 2, Type: protocol.CommandPrompt, Text: "queued"}
	p.onEmit = func(ev protocol.Event) {
		if ev.Type == protocol.EventTurnCompleted && ev.TurnID == "turn-1" {
			p.out.Close() // the agent exits right after its answer
			select {
			case <-closed:
			case <-time.After(fakeserver.WaitTimeout):
				t.Error("the connection did not end")
			}
		}
	}
	p.reply(pid, map[string]any{"stopReason": "end_turn"})
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(fakeserver.WaitTimeout):
		t.Fatal("Serve did not return after the agent's output ended")
	}
	p.mu.Lock()
	evs := p.evs
	p.mu.Unlock()
	if fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventTurnStarted && ev.TurnID == "turn-2" }) {
		t.Errorf("the queued prompt started on the dead agent:\n%s", turnEvents(evs))
	}
	if !fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventTurnCompleted && ev.TurnID == "turn-1" }) {
		t.Errorf("the first turn did not end as the agent said:\n%s", turnEvents(evs))
	}
}

// connWatch closes closed when the SDK logs that its connection closed.
type connWatch struct {
	slog.Handler
	closed chan struct{}
	once   *sync.Once
}

func (h *connWatch) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "connection closed" {
		h.once.Do(func() { close(h.closed) })
	}
	return h.Handler.Handle(ctx, r)
}

func (h *connWatch) WithAttrs(as []slog.Attr) slog.Handler {
	return &connWatch{h.Handler.WithAttrs(as), h.closed, h.once}
}

func (h *connWatch) WithGroup(name string) slog.Handler {
	return &connWatch{h.Handler.WithGroup(name), h.closed, h.once}
}

// Option ids that are one once Rein's id rules are applied (a character
// Rein's ids do not take, a long id cut to 64 bytes) stay two options:
// each answer reaches the agent as the option the user chose, not the
// other one that took its place.
func TestOptionIDsThatSanitizeAlike(t *testing.T) {
	p := startPeer(t, "")
	pid := p.prompt(1, "edit")
	long := strings.Repeat("x", 70)
	p.send(map[string]any{"jsonrpc": "2.0", "id": 9, "method": "session/request_permission", "params": map[string]any{
		"sessionId": "s1",
		"toolCall":  map[string]any{"toolCallId": "x", "title": "edit f", "kind": "edit", "status": "pending"},
		"options": []any{
			map[string]any{"optionId": "allow once", "name": "Allow once", "kind": "allow_once"},
			map[string]any{"optionId": "allow_once", "name": "Allow always", "kind": "allow_always"},
			map[string]any{"optionId": long + "a", "name": "Reject", "kind": "reject_once"},
			map[string]any{"optionId": long + "b", "name": "Reject always", "kind": "reject_always"},
		},
	}})
	evs := p.wait("the permission request", has(protocol.EventPermissionRequested))
	var req protocol.Event
	for _, ev := range evs {
		if ev.Type == protocol.EventPermissionRequested {
			req = ev
		}
	}
	ids := map[string]string{} // name -> Rein id
	for _, o := range req.Options {
		if _, dup := ids[o.ID]; dup {
			t.Errorf("two options have the id %q: %+v", o.ID, req.Options)
		}
		ids[o.ID] = o.Name
		if !protocol.ValidEventID(o.ID) || len(o.ID) > 64 {
			t.Errorf("option id %q is not a valid id of at most 64 bytes", o.ID)
		}
	}
	var chosen string
	for id, name := range ids {
		if name == "Allow always" {
			chosen = id
		}
	}
	p.cmds <- protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: req.ID, OptionID: chosen}
	if got := string(p.expectAnswer(9)); got != `{"outcome":{"optionId":"allow_once","outcome":"selected"}}` {
		t.Errorf("choosing %q (Allow always) answered %s; want the agent's option allow_once", chosen, got)
	}
	p.reply(pid, map[string]any{"stopReason": "end_turn"})
	p.wait("the turn's end", has(protocol.EventTurnCompleted))
}

// Two tool calls whose ids are one once Rein's id rules are applied stay
// two tool calls. Gemini CLI names a call after its tool and the time in
// milliseconds: with a long (MCP) tool name, two calls of it in a turn
// were alike in their first 64 bytes, and the reducer, which keeps one
// artifact per tool call id in a turn, showed them as one call holding
// the second's input and output.
func TestToolCallIDsThatSanitizeAlike(t *testing.T) {
	p := startPeer(t, "")
	pid := p.prompt(1, "review")
	name := "github__add_pull_request_review_comment_to_pending_review"
	for i, id := range []string{name + "-1733456789012", name + "-1733456790345"} {
		p.update(map[string]any{"sessionUpdate": "tool_call", "toolCallId": id, "title": "comment " + mustJSON(t, i), "kind": "other", "status": "in_progress"})
		p.update(map[string]any{"sessionUpdate": "tool_call_update", "toolCallId": id, "status": "completed", "rawOutput": "ok " + mustJSON(t, i)})
	}
	p.reply(pid, map[string]any{"stopReason": "end_turn"})
	evs := p.wait("the turn's end", has(protocol.EventTurnCompleted))
	starts, ends := map[string]bool{}, map[string]bool{}
	for _, ev := range evs {
		switch ev.Type {
		case protocol.EventToolCallStart:
			starts[ev.ID] = true
		case protocol.EventToolCallEnd:
			ends[ev.ID] = true
		}
		if ev.ID != "" && !protocol.ValidEventID(ev.ID) {
			t.Errorf("%s has the invalid id %q", ev.Type, ev.ID)
		}
	}
	if len(starts) != 2 || len(ends) != 2 {
		t.Errorf("two tool calls started under %d ids and ended under %d; want 2 each:\n%s", len(starts), len(ends), turnEvents(evs))
	}
}

// An ACP agent withdraws a permission request ($/cancel_request) that
// the user answered at the same moment: the answer reaches the adapter
// after the request was resolved cancelled, and cannot take effect. It
// used to be logged only, so the user who answered read no word that
// their answer did nothing; now the transcript says so, with the notice
// agentd posts for every answer not applied.
func TestAnswerToWithdrawnRequestIsTold(t *testing.T) {
	p := startPeer(t, "")
	pid := p.prompt(1, "ask")
	p.askPermission(7, "x")
	p.wait("the permission request", has(protocol.EventPermissionRequested))
	p.send(map[string]any{"jsonrpc": "2.0", "method": "$/cancel_request", "params": map[string]any{"requestId": 7}})
	p.wait("the request withdrawn", has(protocol.EventPermissionResolved))
	p.cmds <- protocol.Command{ID: 2, Type: protocol.CommandPermissionResponse, RequestID: "turn-1:perm-1", OptionID: "yes"}
	want := `agentd: the answer to permission request "turn-1:perm-1" (command 2) was not given to the agent: ` + notapplied.Ended
	evs := p.wait("the answer told not applied", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventNotice })
	})
	p.reply(pid, map[string]any{"stopReason": "end_turn"})
	var got []string
	for _, ev := range evs {
		switch ev.Type {
		case protocol.EventPermissionResolved:
			got = append(got, string(ev.Type)+" "+string(ev.Outcome))
		case protocol.EventNotice:
			got = append(got, string(ev.Type)+" "+string(ev.Level)+" "+ev.NoticeCode+": "+ev.Message)
		}
	}
	if wantEvs := []string{"permission_resolved cancelled", "notice warning " + notapplied.Code + ": " + want}; mustJSON(t, got) != mustJSON(t, wantEvs) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantEvs, "\n"))
	}
}

// gatedStdin is the agent's stdin with the session/prompt request held
// until release is closed, as a loaded machine holds the SDK's goroutine
// that writes it; held is closed once it is held. closedEarly records a
// Close while the request waits.
type gatedStdin struct {
	w           io.WriteCloser
	release     chan struct{}
	held        chan struct{}
	mu          sync.Mutex
	holding     bool
	closedEarly bool
}

func (g *gatedStdin) Write(b []byte) (int, error) {
	if strings.Contains(string(b), `"method":"session/prompt"`) {
		g.mu.Lock()
		g.holding = true
		close(g.held)
		g.mu.Unlock()
		<-g.release
		g.mu.Lock()
		g.holding = false
		g.mu.Unlock()
	}
	return g.w.Write(b)
}

func (g *gatedStdin) Close() error {
	g.mu.Lock()
	g.closedEarly = g.closedEarly || g.holding
	g.mu.Unlock()
	return g.w.Close()
}

// A shutdown that comes as a prompt's turn has started, before the SDK
// wrote its request: the agent's input is closed only once the request is
// written. Closed first, the request failed ("file already closed"), the
// prompt, counted as taken by its turn_started, never reached the agent,
// and its turn read as failed.
func TestShutdownWaitsForThePromptsRequest(t *testing.T) {
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	g := &gatedStdin{w: stdinW, release: make(chan struct{}), held: make(chan struct{})}
	from := make(chan map[string]json.RawMessage, 64)
	go func() {
		defer close(from)
		sc := bufio.NewScanner(stdinR)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var m map[string]json.RawMessage
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				from <- m
			}
		}
	}()
	cmds := make(chan protocol.Command)
	var mu sync.Mutex
	var evs []protocol.Event
	served := make(chan error, 1)
	go func() {
		served <- acp.Serve(context.Background(), acp.Options{
			Stdin: g, Stdout: stdoutR, Commands: cmds, Name: "fake", Cwd: "/work",
			Logger: fakeserver.Logger(t, slog.LevelDebug),
			Emit: func(_ context.Context, ev protocol.Event) error {
				mu.Lock()
				defer mu.Unlock()
				evs = append(evs, ev)
				return nil
			},
		})
	}()
	t.Cleanup(func() {
		stdoutW.Close()
		stdinR.Close()
	})
	next := func(method string) json.RawMessage {
		t.Helper()
		select {
		case m, ok := <-from:
			if !ok {
				t.Fatalf("the adapter closed the agent's stdin; want %s", method)
			}
			var got string
			_ = json.Unmarshal(m["method"], &got)
			if got != method {
				t.Fatalf("adapter sent %s, want %s", m, method)
			}
			return m["id"]
		case <-time.After(fakeserver.WaitTimeout):
			t.Fatalf("no %s", method)
		}
		return nil
	}
	reply := func(id json.RawMessage, result any) {
		t.Helper()
		if _, err := io.WriteString(stdoutW, mustJSON(t, map[string]any{"jsonrpc": "2.0", "id": id, "result": result})+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	reply(next("initialize"), map[string]any{"protocolVersion": 1})
	reply(next("session/new"), map[string]any{"sessionId": "s1"})

	cmds <- protocol.Command{ID: 1, Type: protocol.CommandPrompt, Text: "first"}
	// The turn has started and the SDK is writing its request. (A
	// prompt the adapter reads during its handshake waits for the
	// session, and a shutdown meanwhile leaves it untaken: not this
	// test's case.)
	select {
	case <-g.held:
	case <-time.After(fakeserver.WaitTimeout):
		t.Fatal("the prompt's request was never written")
	}
	cmds <- protocol.Command{Type: protocol.CommandShutdown}
	// Taken only once the adapter has handled the shutdown: whatever it
	// closed, it closed by now. (A prompt after a shutdown waits for
	// the next agent.)
	cmds <- protocol.Command{ID: 2, Type: protocol.CommandPrompt, Text: "queued"}
	g.mu.Lock()
	early := g.closedEarly
	g.mu.Unlock()
	close(g.release)
	if early {
		t.Fatal("the agent's stdin was closed while the prompt's request waited to be written")
	}
	pid := next("session/prompt")
	// Then the input ends: no queued prompt after the shutdown.
	select {
	case m, ok := <-from:
		if ok {
			t.Fatalf("adapter sent %s after the shutdown; want its input closed", m)
		}
	case <-time.After(fakeserver.WaitTimeout):
		t.Fatal("the agent's input was not closed after the prompt's request")
	}
	reply(pid, map[string]any{"stopReason": "end_turn"})
	stdoutW.Close()
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(fakeserver.WaitTimeout):
		t.Fatal("Serve did not return")
	}
	mu.Lock()
	defer mu.Unlock()
	var ends []string
	for _, ev := range evs {
		if ev.Type == protocol.EventTurnCompleted {
			ends = append(ends, string(ev.StopReason)+" "+ev.Error)
		}
		if ev.Type == protocol.EventUserMessage && ev.Text == "queued" {
			t.Errorf("the prompt after the shutdown was started")
		}
	}
	if len(ends) != 1 || ends[0] != "end_turn " {
		t.Errorf("turn ends %q, want one end_turn", ends)
	}
}
