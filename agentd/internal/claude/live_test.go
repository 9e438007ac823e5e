package claude_test

import (
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/fakemodel"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

var record = flag.Bool("record", false, "write the transcripts of the runs against the real CLI to testdata/")

// claudeBin returns the Claude Code binary (installed by `make
// test-agent-claude`, which exports REIN_CLAUDE_BIN), or skips.
func claudeBin(t *testing.T) string {
	t.Helper()
	p := os.Getenv("REIN_CLAUDE_BIN")
	if p == "" {
		t.Skip("REIN_CLAUDE_BIN is not set: run `make test-agent-claude` (or `make test-agents`) at the repo root to install Claude Code and run these tests against it; the replay tests cover the adapter without it")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("REIN_CLAUDE_BIN=%s: %v", p, err)
	}
	return p
}

// claudeEnv is an environment in which Claude Code talks to api only and
// keeps its state in a temporary HOME.
func claudeEnv(t *testing.T, api *fakemodel.Anthropic) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "ANTHROPIC_") || strings.HasPrefix(k, "CLAUDE_") || k == "HOME" {
			continue // no real credentials or settings leak into the test
		}
		env = append(env, kv)
	}
	return append(env,
		"HOME="+t.TempDir(),
		"ANTHROPIC_BASE_URL="+api.URL,
		"ANTHROPIC_API_KEY=dummy",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
		"DISABLE_TELEMETRY=1",
		"DISABLE_AUTOUPDATER=1",
		"DISABLE_ERROR_REPORTING=1",
		// Only needed to skip permissions as root; harmless otherwise.
		"IS_SANDBOX=1",
	)
}

// live is agentd running Claude Code against a fake API and a fake Rein
// server.
type live struct {
	srv        *fakeserver.Server
	dir        string
	transcript *fakeserver.Buffer
	stop       func() error
}

func startLive(t *testing.T) *live {
	t.Helper()
	bin := claudeBin(t)
	api := fakemodel.NewAnthropic(t)
	return startLiveIn(t, fakeserver.New(t, "claude"), t.TempDir(), "", claudeEnv(t, api), bin)
}

// startLiveIn runs agentd for srv with the agent in dir, state in state
// ("" for none) and the environment env.
func startLiveIn(t *testing.T, srv *fakeserver.Server, dir, state string, env []string, bin string) *live {
	t.Helper()
	l := &live{srv: srv, dir: dir, transcript: &fakeserver.Buffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- agentd.Run(ctx, agentd.Options{
			Server: srv.URL, Session: srv.Session, Protocol: agentd.ProtocolClaude,
			Command: []string{bin}, Dir: l.dir, Env: env, StateDir: state,
			HeartbeatInterval: time.Hour, ShutdownGrace: 5 * time.Second,
			Transcript: l.transcript,
			Logger:     fakeserver.Logger(t, slog.LevelDebug),
		})
	}()
	var once sync.Once
	var runErr error
	l.stop = func() error {
		once.Do(func() {
			cancel()
			t := time.NewTimer(fakeserver.WaitTimeout)
			defer t.Stop()
			select {
			case runErr = <-done:
			case <-t.C:
				panic("agentd.Run did not return")
			}
		})
		return runErr
	}
	t.Cleanup(func() { l.stop() })
	srv.Wait(t, "agent_started", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventAgentStarted)) })
	// A stream that connects later would not deliver an earlier prompt.
	srv.WaitState(t, "an open command stream", func() bool { return srv.OpenStreams() > 0 })
	return l
}

// turn sends a prompt and waits for its turn to end.
func (l *live) turn(t *testing.T, text string) {
	t.Helper()
	id := l.srv.Prompt(text)
	l.waitEnd(t, "turn-"+itoa(id))
}

func (l *live) waitEnd(t *testing.T, turn string) {
	t.Helper()
	l.srv.Wait(t, turn+" to end", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventTurnCompleted && ev.TurnID == turn
		})
	})
}

// finish stops agentd, records the transcript when asked, and checks the
// events against the scenario's.
func (l *live) finish(t *testing.T, name string) {
	t.Helper()
	if err := l.stop(); err != nil {
		t.Errorf("agentd.Run: %v", err)
	}
	evs := l.srv.Events()
	started := evs[0]
	if started.Type != protocol.EventAgentStarted || started.Agent.Name != "claude-code" || started.Agent.Protocol != "claude" || started.Cwd != l.dir {
		t.Errorf("first event = %s, want agent_started for claude-code over claude in %s", fakeserver.Format(evs[:1]), l.dir)
	}
	if !fakeserver.Has(evs, func(ev protocol.Event) bool {
		return ev.Type == protocol.EventAgentStarted && ev.Model != "" && ev.Agent.Version != "" && ev.Cwd == l.dir
	}) {
		t.Errorf("no agent_started with the model and version from Claude Code's init message:\n%s", fakeserver.Format(evs))
	}
	if got := format(evs, l.dir); got != scenarios[name] {
		t.Errorf("%s events:\n got:\n%s\nwant:\n%s", name, got, scenarios[name])
	}
	if *record {
		path := filepath.Join("testdata", name+".jsonl")
		if err := os.WriteFile(path, l.transcript.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", name+".cwd"), []byte(l.dir), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %s", path)
	}
}

// TestClaudeTurns drives the real CLI through five turns in one process:
// thinking and text, a shell command, a permission granted, one denied,
// and a plan.
func TestClaudeTurns(t *testing.T) {
	l := startLive(t)
	l.turn(t, "please think")
	l.turn(t, "run the marker command")
	if got := l.srv.Events(); !fakeserver.Has(got, func(ev protocol.Event) bool {
		return ev.Type == protocol.EventToolCallEnd && ev.Output == "rein-bash-ok"
	}) {
		t.Errorf("the Bash call did not report the echo's output:\n%s", fakeserver.Format(got))
	}

	for _, answer := range []string{"allow_once", "reject_once"} {
		id := l.srv.Prompt("write the note")
		perm := "turn-" + itoa(id) + ":perm-1"
		l.srv.Wait(t, perm, func(evs []protocol.Event) bool {
			return fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.ID == perm })
		})
		l.srv.Send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: perm, OptionID: answer})
		l.waitEnd(t, "turn-"+itoa(id))
	}
	if b, err := os.ReadFile(filepath.Join(l.dir, "note.txt")); err != nil || string(b) != "hi\n" {
		t.Errorf("note.txt = %q, %v; want the allowed Write to have written \"hi\\n\"", b, err)
	}
	l.turn(t, "todo: plan it")
	l.finish(t, "turns")
}

// TestClaudeBigWrite: a Write whose input (the whole file, about 530 KB)
// is above the protocol's event size reaches the server cut, not dropped:
// the user sees the permission request and what it writes where, and
// allowing it writes the whole file.
func TestClaudeBigWrite(t *testing.T) {
	l := startLive(t)
	id := l.srv.Prompt("write the big file")
	perm := "turn-" + itoa(id) + ":perm-1"
	l.srv.Wait(t, perm, func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.ID == perm })
	})
	l.srv.Send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: perm, OptionID: "allow_once"})
	l.waitEnd(t, "turn-"+itoa(id))
	if err := l.stop(); err != nil {
		t.Errorf("agentd.Run: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(l.dir, "big.xml")); err != nil || string(b) != fakemodel.BigFile() {
		t.Errorf("big.xml: %d bytes, %v; want the %d bytes of fakemodel.BigFile", len(b), err, len(fakemodel.BigFile()))
	}
	evs := l.srv.Events()
	for _, typ := range []protocol.EventType{protocol.EventToolCallStart, protocol.EventPermissionRequested} {
		var in map[string]string
		for _, ev := range evs {
			if ev.Type == typ && ev.Input != nil {
				in = nil
				if err := json.Unmarshal(ev.Input, &in); err != nil {
					t.Errorf("%s input %.200s: %v", typ, ev.Input, err)
				}
			}
		}
		if !strings.HasSuffix(in["file_path"], "big.xml") || !strings.HasPrefix(in["content"], `<row n="0">a &amp; b</row>`) ||
			!strings.Contains(in["content"], "\n[cut by agentd: ") {
			t.Errorf("%s input: file_path %q, content %.60q ... %.60q; want the path, and the content's start marked cut",
				typ, in["file_path"], in["content"], in["content"][max(0, len(in["content"])-60):])
		}
	}
	if !fakeserver.Has(evs, func(ev protocol.Event) bool {
		return ev.Type == protocol.EventToolCallEnd && ev.Status == protocol.ToolCompleted
	}) {
		t.Errorf("no completed tool_call_end:\n%s", fakeserver.Format(evs))
	}
}

// TestClaudeAbort interrupts a stalled stream and goes on in the same
// process.
func TestClaudeAbort(t *testing.T) {
	l := startLive(t)
	id := l.srv.Prompt("slow story")
	l.srv.Wait(t, "three words", func(evs []protocol.Event) bool {
		return fakeserver.Count(evs, protocol.EventTextDelta) == 3
	})
	l.srv.Send(protocol.Command{Type: protocol.CommandAbort})
	l.waitEnd(t, "turn-"+itoa(id))
	l.turn(t, "think again")
	l.finish(t, "abort")
}

// TestClaudeResume: the Claude Code of a restarted agentd (same state
// dir) resumes the conversation of the one before: the model gets the
// earlier prompt with the new one.
func TestClaudeResume(t *testing.T) {
	bin := claudeBin(t)
	api := fakemodel.NewAnthropic(t)
	srv := fakeserver.New(t, "claude")
	dir, state, env := t.TempDir(), t.TempDir(), claudeEnv(t, api)
	l := startLiveIn(t, srv, dir, state, env, bin)
	l.turn(t, "please think")
	if err := l.stop(); err != nil {
		t.Fatalf("agentd.Run: %v", err)
	}
	saved, err := os.ReadFile(filepath.Join(state, srv.Session, "conversation"))
	if err != nil || !strings.Contains(string(saved), `"protocol":"claude"`) {
		t.Fatalf("state dir conversation = %q, %v; want Claude Code's session id", saved, err)
	}

	l = startLiveIn(t, srv, dir, state, env, bin)
	id := l.srv.Prompt("recall")
	l.waitEnd(t, "turn-"+itoa(id))
	evs := srv.Events()
	want := "Earlier prompts: please think | recall"
	if !fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventTextEnd && ev.Text == want }) {
		t.Errorf("no text_end %q: the second Claude Code did not resume the conversation:\n%s", want, format(evs, dir))
	}
}

func isType(t protocol.EventType) func(protocol.Event) bool {
	return func(ev protocol.Event) bool { return ev.Type == t }
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// format renders the events a scenario compares: everything but
// agent_started (its cwd and version vary by run and install), heartbeats,
// and agentd's own events after the last turn (the agent's exit); the
// agent's temporary working directory dir reads <dir>.
func format(evs []protocol.Event, dir string) string {
	last := -1
	for i, ev := range evs {
		if ev.Type == protocol.EventTurnCompleted {
			last = i
		}
	}
	var out []protocol.Event
	for _, ev := range evs[:last+1] {
		if ev.Type != protocol.EventAgentStarted && ev.Type != protocol.EventHeartbeat {
			out = append(out, ev)
		}
	}
	return strings.ReplaceAll(fakeserver.Format(out), dir, "<dir>")
}

// scenarios are the exact events of each recorded run.
var scenarios = map[string]string{
	"turns": `{"type":"turn_started","turnId":"turn-1","promptId":"prompt-1","source":"user"}
{"type":"user_message","id":"user-1","promptId":"prompt-1","text":"please think"}
{"type":"reasoning_delta","id":"turn-1:msg_01-0","delta":"The user "}
{"type":"reasoning_delta","id":"turn-1:msg_01-0","delta":"wants a greeting."}
{"type":"reasoning_end","id":"turn-1:msg_01-0","text":"The user wants a greeting."}
{"type":"text_delta","id":"turn-1:msg_01-1","delta":"Hello "}
{"type":"text_delta","id":"turn-1:msg_01-1","delta":"from the "}
{"type":"text_delta","id":"turn-1:msg_01-1","delta":"fake model."}
{"type":"text_end","id":"turn-1:msg_01-1","text":"Hello from the fake model."}
{"type":"usage_updated","inputTokens":120,"outputTokens":12,"cachedInputTokens":20,"costUsd":0.000644,"contextSize":1000000}
{"type":"turn_completed","turnId":"turn-1","stopReason":"end_turn","resultText":"Hello from the fake model."}
{"type":"turn_started","turnId":"turn-2","promptId":"prompt-2","source":"user"}
{"type":"user_message","id":"user-2","promptId":"prompt-2","text":"run the marker command"}
{"type":"text_delta","id":"turn-2:msg_02-0","delta":"Running it."}
{"type":"text_end","id":"turn-2:msg_02-0","text":"Running it."}
{"type":"tool_call_start","id":"turn-2:toolu_02","name":"Bash","kind":"execute"}
{"type":"tool_input_delta","id":"turn-2:toolu_02","delta":"{\"command\": \"echo rein"}
{"type":"tool_input_delta","id":"turn-2:toolu_02","delta":"-bash-ok\", \"description\": \"Print a marker\"}"}
{"type":"tool_call_start","id":"turn-2:toolu_02","name":"Bash","kind":"execute","title":"echo rein-bash-ok","input":{"command":"echo rein-bash-ok","description":"Print a marker"}}
{"type":"tool_call_end","id":"turn-2:toolu_02","status":"completed","output":"rein-bash-ok"}
{"type":"text_delta","id":"turn-2:msg_03-0","delta":"Done."}
{"type":"text_end","id":"turn-2:msg_03-0","text":"Done."}
{"type":"usage_updated","inputTokens":240,"outputTokens":24,"cachedInputTokens":40,"costUsd":0.001288,"contextSize":1000000}
{"type":"turn_completed","turnId":"turn-2","stopReason":"end_turn","resultText":"Done."}
{"type":"turn_started","turnId":"turn-3","promptId":"prompt-3","source":"user"}
{"type":"user_message","id":"user-3","promptId":"prompt-3","text":"write the note"}
{"type":"tool_call_start","id":"turn-3:toolu_04","name":"Write","kind":"edit"}
{"type":"tool_input_delta","id":"turn-3:toolu_04","delta":"{\"file_path\": \"note.txt\", "}
{"type":"tool_input_delta","id":"turn-3:toolu_04","delta":"\"content\": \"hi\\n\"}"}
{"type":"tool_call_start","id":"turn-3:toolu_04","name":"Write","kind":"edit","title":"note.txt","input":{"file_path":"note.txt","content":"hi\n"}}
{"type":"permission_requested","id":"turn-3:perm-1","title":"Write: note.txt","input":{"file_path":"<dir>/note.txt","content":"hi\n"},"toolCallId":"turn-3:toolu_04","options":[{"id":"allow_once","name":"Allow","kind":"allow_once"},{"id":"allow_always","name":"Always allow","kind":"allow_always"},{"id":"reject_once","name":"Deny","kind":"reject_once"}]}
{"type":"permission_resolved","id":"turn-3:perm-1","outcome":"selected","optionId":"allow_once"}
{"type":"tool_call_end","id":"turn-3:toolu_04","status":"completed","output":"File created successfully at: note.txt (file state is current in your context — no need to Read it back)"}
{"type":"text_delta","id":"turn-3:msg_05-0","delta":"Done."}
{"type":"text_end","id":"turn-3:msg_05-0","text":"Done."}
{"type":"usage_updated","inputTokens":240,"outputTokens":24,"cachedInputTokens":40,"costUsd":0.001288,"contextSize":1000000}
{"type":"turn_completed","turnId":"turn-3","stopReason":"end_turn","resultText":"Done."}
{"type":"turn_started","turnId":"turn-5","promptId":"prompt-5","source":"user"}
{"type":"user_message","id":"user-5","promptId":"prompt-5","text":"write the note"}
{"type":"tool_call_start","id":"turn-5:toolu_06","name":"Write","kind":"edit"}
{"type":"tool_input_delta","id":"turn-5:toolu_06","delta":"{\"file_path\": \"note.txt\", "}
{"type":"tool_input_delta","id":"turn-5:toolu_06","delta":"\"content\": \"hi\\n\"}"}
{"type":"tool_call_start","id":"turn-5:toolu_06","name":"Write","kind":"edit","title":"note.txt","input":{"file_path":"note.txt","content":"hi\n"}}
{"type":"permission_requested","id":"turn-5:perm-1","title":"Write: note.txt","input":{"file_path":"<dir>/note.txt","content":"hi\n"},"toolCallId":"turn-5:toolu_06","options":[{"id":"allow_once","name":"Allow","kind":"allow_once"},{"id":"allow_always","name":"Always allow","kind":"allow_always"},{"id":"reject_once","name":"Deny","kind":"reject_once"}]}
{"type":"permission_resolved","id":"turn-5:perm-1","outcome":"selected","optionId":"reject_once"}
{"type":"tool_call_end","id":"turn-5:toolu_06","status":"denied","output":"The user denied this tool use."}
{"type":"text_delta","id":"turn-5:msg_07-0","delta":"Done."}
{"type":"text_end","id":"turn-5:msg_07-0","text":"Done."}
{"type":"usage_updated","inputTokens":240,"outputTokens":24,"cachedInputTokens":40,"costUsd":0.001288,"contextSize":1000000}
{"type":"turn_completed","turnId":"turn-5","stopReason":"end_turn","resultText":"Done."}
{"type":"turn_started","turnId":"turn-7","promptId":"prompt-7","source":"user"}
{"type":"user_message","id":"user-7","promptId":"prompt-7","text":"todo: plan it"}
{"type":"plan_updated","id":"turn-7:plan","entries":[{"content":"Read the code","status":"in_progress"},{"content":"Fix the bug","status":"pending"}]}
{"type":"text_delta","id":"turn-7:msg_09-0","delta":"Done."}
{"type":"text_end","id":"turn-7:msg_09-0","text":"Done."}
{"type":"usage_updated","inputTokens":240,"outputTokens":24,"cachedInputTokens":40,"costUsd":0.001288,"contextSize":1000000}
{"type":"turn_completed","turnId":"turn-7","stopReason":"end_turn","resultText":"Done."}
`,
	"abort": `{"type":"turn_started","turnId":"turn-1","promptId":"prompt-1","source":"user"}
{"type":"user_message","id":"user-1","promptId":"prompt-1","text":"slow story"}
{"type":"text_delta","id":"turn-1:msg_01-0","delta":"w1 "}
{"type":"text_delta","id":"turn-1:msg_01-0","delta":"w2 "}
{"type":"text_delta","id":"turn-1:msg_01-0","delta":"w3 "}
{"type":"usage_updated","inputTokens":0,"outputTokens":0,"cachedInputTokens":0,"costUsd":0.000464,"contextSize":1000000}
{"type":"turn_completed","error":"[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=null","turnId":"turn-1","stopReason":"cancelled"}
{"type":"turn_started","turnId":"turn-3","promptId":"prompt-3","source":"user"}
{"type":"user_message","id":"user-3","promptId":"prompt-3","text":"think again"}
{"type":"reasoning_delta","id":"turn-3:msg_02-0","delta":"The user "}
{"type":"reasoning_delta","id":"turn-3:msg_02-0","delta":"wants a greeting."}
{"type":"reasoning_end","id":"turn-3:msg_02-0","text":"The user wants a greeting."}
{"type":"text_delta","id":"turn-3:msg_02-1","delta":"Hello "}
{"type":"text_delta","id":"turn-3:msg_02-1","delta":"from the "}
{"type":"text_delta","id":"turn-3:msg_02-1","delta":"fake model."}
{"type":"text_end","id":"turn-3:msg_02-1","text":"Hello from the fake model."}
{"type":"usage_updated","inputTokens":120,"outputTokens":12,"cachedInputTokens":20,"costUsd":0.000644,"contextSize":1000000}
{"type":"turn_completed","turnId":"turn-3","stopReason":"end_turn","resultText":"Hello from the fake model."}
`,
}

// TestClaudeMatrix runs the matrix rows TestClaudeTurns and TestClaudeAbort
// leave out, in one Claude Code process: abort mid-tool (the turn ends
// and the command it started is gone), abort while a permission is
// pending, two turns with memory (asserted at the fake model) and two
// prompts back to back. Each row is checked here; with -record the run's
// transcript and exact events go to testdata/matrix.*, which TestReplay
// replays.
func TestClaudeMatrix(t *testing.T) {
	bin := claudeBin(t)
	api := fakemodel.NewAnthropic(t)
	l := startLiveIn(t, fakeserver.New(t, "claude"), t.TempDir(), "", claudeEnv(t, api), bin)
	srv := l.srv
	end := func(t *testing.T, id int64) protocol.Event {
		t.Helper()
		turn := "turn-" + itoa(id)
		l.waitEnd(t, turn)
		for _, ev := range srv.Events() {
			if ev.Type == protocol.EventTurnCompleted && ev.TurnID == turn {
				return ev
			}
		}
		return protocol.Event{}
	}
	turnEvents := func(id int64) []protocol.Event {
		turn := "turn-" + itoa(id)
		var out []protocol.Event
		for _, ev := range srv.Events() {
			if ev.TurnID == turn || strings.HasPrefix(ev.ID, turn+":") {
				out = append(out, ev)
			}
		}
		return out
	}

	t.Run("abort_mid_tool", func(t *testing.T) {
		id := srv.Prompt("sleepy")
		// Allow the command if Claude Code asks, until it runs.
		stop, answered := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(answered)
			perm := "turn-" + itoa(id) + ":perm-1"
			for {
				if fakeserver.Has(srv.Events(), func(ev protocol.Event) bool { return ev.ID == perm && ev.Type == protocol.EventPermissionRequested }) {
					srv.Send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: perm, OptionID: "allow_once"})
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		pid := fakeserver.WaitProcess(t, "sleep\x00"+fakemodel.SleepyArg+"\x00")
		close(stop)
		<-answered
		srv.Send(protocol.Command{Type: protocol.CommandAbort})
		if ev := end(t, id); ev.StopReason != protocol.StopCancelled {
			t.Errorf("aborted turn ended %q:\n%s", ev.StopReason, fakeserver.Format(turnEvents(id)))
		}
		fakeserver.WaitGone(t, pid)
	})
	t.Run("abort_while_permission_pending", func(t *testing.T) {
		id := srv.Prompt("write the note")
		perm := "turn-" + itoa(id) + ":perm-1"
		srv.Wait(t, perm, func(evs []protocol.Event) bool {
			return fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.ID == perm })
		})
		srv.Send(protocol.Command{Type: protocol.CommandAbort})
		ev := end(t, id)
		evs := turnEvents(id)
		resolved := fakeserver.Has(evs, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventPermissionResolved && ev.ID == perm && ev.Outcome == protocol.OutcomeCancelled
		})
		if _, err := os.Stat(filepath.Join(l.dir, "note.txt")); err == nil || ev.StopReason != protocol.StopCancelled || !resolved {
			t.Errorf("note.txt written (%v), or the turn or permission not cancelled:\n%s", err == nil, fakeserver.Format(evs))
		}
	})
	t.Run("two_turns_with_memory", func(t *testing.T) {
		l.turn(t, "please think")
		l.turn(t, "recall")
		// At the model: the recall request carried the earlier turn.
		found := false
		for _, r := range api.Requests() {
			found = found || (slices.Contains(r, "please think") && slices.Contains(r, "recall"))
		}
		if !found {
			t.Errorf("no request to the model carried the first turn with the second: %q", api.Requests())
		}
	})
	t.Run("back_to_back", func(t *testing.T) {
		a := srv.Prompt("hello")
		b := srv.Prompt("hello again")
		for _, id := range []int64{a, b} {
			if ev := end(t, id); ev.StopReason != protocol.StopEndTurn || fakeserver.Count(turnEvents(id), protocol.EventTextEnd) == 0 {
				t.Errorf("turn %d:\n%s", id, fakeserver.Format(turnEvents(id)))
			}
		}
		// One turn_completed per prompt, so the session reads idle after each.
		if n := fakeserver.Count(srv.Events(), protocol.EventTurnCompleted); n != fakeserver.Count(srv.Events(), protocol.EventTurnStarted) {
			t.Errorf("%d turn_completed for %d turns", n, fakeserver.Count(srv.Events(), protocol.EventTurnStarted))
		}
	})
	if err := l.stop(); err != nil {
		t.Errorf("agentd.Run: %v", err)
	}
	if *record {
		for name, data := range map[string][]byte{
			"matrix.jsonl":        l.transcript.Bytes(),
			"matrix.cwd":          []byte(l.dir),
			"matrix.events.jsonl": []byte(format(srv.Events(), l.dir)),
		} {
			if err := os.WriteFile(filepath.Join("testdata", name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("recorded testdata/matrix.*")
	}
}
