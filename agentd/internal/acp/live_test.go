package acp_test

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/fakemodel"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

var record = flag.Bool("record", false, "write the transcripts of the runs against the real agents to testdata/")

// sandboxWork replaces the run's temporary working directory in what is
// recorded, so the testdata is the same on every machine.
const sandboxWork = "/sandbox/work"

// modes are the --acp-mode each recorded agent ran with.
var modes = map[string]string{"claude-agent-acp": "default", "claude-agent-acp-resume": "default", "gemini": "", "opencode": "", "opencode-resume": ""}

// liveACP is agentd running a real ACP agent against a fake Rein server.
type liveACP struct {
	srv        *fakeserver.Server
	dir        string
	transcript *fakeserver.Buffer
	stop       func()
}

func startLiveACP(t *testing.T, bin string, env []string, mode string) *liveACP {
	t.Helper()
	return startLiveACPIn(t, fakeserver.New(t, "acp-live"), t.TempDir(), "", bin, env, mode)
}

// startLiveACPIn runs agentd for srv with the agent in dir and state in
// state ("" for none).
func startLiveACPIn(t *testing.T, srv *fakeserver.Server, dir, state, bin string, env []string, mode string) *liveACP {
	t.Helper()
	return startLiveACPCmd(t, srv, dir, state, []string{bin}, env, mode)
}

// startLiveACPCmd is startLiveACPIn for an agent command with arguments
// (gemini --acp, opencode acp).
func startLiveACPCmd(t *testing.T, srv *fakeserver.Server, dir, state string, command, env []string, mode string) *liveACP {
	t.Helper()
	l := &liveACP{srv: srv, dir: dir, transcript: &fakeserver.Buffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- agentd.Run(ctx, agentd.Options{
			Server: l.srv.URL, Session: l.srv.Session, Protocol: agentd.ProtocolACP, ACPMode: mode,
			Command: command, Dir: l.dir, Env: env, HeartbeatInterval: time.Hour, StateDir: state,
			AbortGrace: 20 * time.Second, Transcript: l.transcript, Logger: fakeserver.Logger(t, slog.LevelInfo),
		})
	}()
	stopped := false
	l.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agentd.Run: %v", err)
			}
		case <-time.After(fakeserver.WaitTimeout):
			t.Errorf("agentd.Run did not return")
		}
	}
	t.Cleanup(l.stop)
	before := fakeserver.Count(l.srv.Events(), protocol.EventAgentStarted)
	l.srv.Wait(t, "the agent's own agent_started", func(evs []protocol.Event) bool {
		return countOf(evs, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventAgentStarted && ev.Agent != nil && ev.Agent.Version != ""
		}) > 0 && fakeserver.Count(evs, protocol.EventAgentStarted) > before+1
	})
	l.srv.WaitState(t, "an open command stream", func() bool { return l.srv.OpenStreams() > 0 })
	return l
}

func (l *liveACP) waitEnd(t *testing.T, id int64) protocol.Event {
	t.Helper()
	turn := "turn-" + strconv.FormatInt(id, 10)
	var end protocol.Event
	l.srv.Wait(t, turn+" to end", func(evs []protocol.Event) bool {
		for _, ev := range evs {
			if ev.Type == protocol.EventTurnCompleted && ev.TurnID == turn {
				end = ev
				return true
			}
		}
		return false
	})
	return end
}

// turnEvents are the events of one turn.
func (l *liveACP) turnEvents(id int64) []protocol.Event {
	prefix := "turn-" + strconv.FormatInt(id, 10)
	var out []protocol.Event
	for _, ev := range l.srv.Events() {
		if ev.TurnID == prefix || strings.HasPrefix(ev.ID, prefix+":") {
			out = append(out, ev)
		}
	}
	return out
}

// answer answers the turn's first permission request with its option of
// kind.
func (l *liveACP) answer(t *testing.T, id int64, kind protocol.OptionKind) {
	t.Helper()
	prefix := "turn-" + strconv.FormatInt(id, 10) + ":"
	var req protocol.Event
	l.srv.Wait(t, "a permission request", func(evs []protocol.Event) bool {
		for _, ev := range evs {
			if ev.Type == protocol.EventPermissionRequested && strings.HasPrefix(ev.ID, prefix) {
				req = ev
				return true
			}
		}
		return false
	})
	for _, o := range req.Options {
		if o.Kind == kind {
			l.srv.Send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: req.ID, OptionID: o.ID})
			return
		}
	}
	t.Fatalf("permission %s has no %s option: %s", req.ID, kind, fakeserver.Format([]protocol.Event{req}))
}

func countOf(evs []protocol.Event, pred func(protocol.Event) bool) int {
	n := 0
	for _, ev := range evs {
		if pred(ev) {
			n++
		}
	}
	return n
}

func typed(t protocol.EventType) func(protocol.Event) bool {
	return func(ev protocol.Event) bool { return ev.Type == t }
}

// claudeAgentACPEnv runs claude-agent-acp against api only, with its
// state in a temporary HOME.
func claudeAgentACPEnv(t *testing.T, api *fakemodel.Anthropic) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "ANTHROPIC_") || strings.HasPrefix(k, "CLAUDE_") || k == "HOME" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+t.TempDir(), "ANTHROPIC_BASE_URL="+api.URL, "ANTHROPIC_API_KEY=dummy",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_TELEMETRY=1", "DISABLE_AUTOUPDATER=1",
		// As root it starts in bypassPermissions, which Claude Code
		// refuses for root without IS_SANDBOX=1; --acp-mode default
		// (modes) then makes it ask.
		"DISABLE_ERROR_REPORTING=1", "IS_SANDBOX=1")
}

// TestClaudeAgentACPMatrix runs @agentclientprotocol/claude-agent-acp
// (REIN_CLAUDE_AGENT_ACP_BIN, set by `make test-agent-claude-agent-acp`)
// through agentd against the fake Anthropic API, row by row.
func TestClaudeAgentACPMatrix(t *testing.T) {
	bin := os.Getenv("REIN_CLAUDE_AGENT_ACP_BIN")
	if bin == "" {
		t.Skip("REIN_CLAUDE_AGENT_ACP_BIN is not set: run `make test-agent-claude-agent-acp` (the replay covers the adapter without the CLI)")
	}
	api := fakemodel.NewAnthropic(t)
	l := startLiveACP(t, bin, claudeAgentACPEnv(t, api), modes["claude-agent-acp"])
	acpMatrix(t, l, nil)
	l.stop()
	recordACP(t, l, "claude-agent-acp")
}

// acpMatrix runs the matrix rows against l's agent, each a subtest. The
// fake model (fakemodel.Anthropic or Gemini) answers the prompts: think,
// run, write, slow, hello, recall, sleepy. skip names rows the agent
// cannot do, with why; they are skipped saying so. skip["shell_output"]
// keeps the shell row but does not expect the command's output (an agent
// that never sends it).
func acpMatrix(t *testing.T, l *liveACP, skip map[string]string) {
	srv := l.srv
	row := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			if why, ok := skip[name]; ok {
				t.Skip(why)
			}
			f(t)
		})
	}

	row("text_and_reasoning", func(t *testing.T) {
		id := srv.Prompt("think")
		end := l.waitEnd(t, id)
		evs := l.turnEvents(id)
		if end.StopReason != protocol.StopEndTurn || countOf(evs, typed(protocol.EventReasoningDelta)) == 0 || countOf(evs, typed(protocol.EventTextDelta)) == 0 {
			t.Errorf("turn:\n%s", fakeserver.Format(evs))
		}
	})
	row("shell_tool_output", func(t *testing.T) {
		id := srv.Prompt("run")
		// Claude Code may or may not ask for echo; answer if it does.
		end := waitEndAnswering(t, l, id, protocol.AllowOnce)
		evs := l.turnEvents(id)
		// The output as Rein shows it: streamed deltas, or the end's
		// output replacing them.
		var out strings.Builder
		for _, ev := range evs {
			switch ev.Type {
			case protocol.EventToolOutputDelta:
				out.WriteString(ev.Delta)
			case protocol.EventToolCallEnd:
				if ev.Output != "" {
					out.Reset()
					out.WriteString(ev.Output)
				}
			}
		}
		// Order: the text written before the tool call ends, whole,
		// before the tool call and its permission appear (the ACP
		// ordering race split it around them).
		first := slices.IndexFunc(evs, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventToolCallStart || ev.Type == protocol.EventPermissionRequested
		})
		said := slices.IndexFunc(evs, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventTextEnd && ev.Text == "Running it."
		})
		if first < 0 || said < 0 || said > first {
			t.Errorf("the text before the tool does not end, whole, before it:\n%s", fakeserver.Format(evs))
		}
		why, noOutput := skip["shell_output"]
		if noOutput {
			t.Logf("the output is not checked: %s", why)
		}
		if end.StopReason != protocol.StopEndTurn || (!noOutput && !strings.Contains(out.String(), "rein-bash-ok")) ||
			countOf(evs, func(ev protocol.Event) bool {
				return ev.Type == protocol.EventToolCallEnd && ev.Status == protocol.ToolCompleted
			}) != 1 {
			t.Errorf("turn:\n%s", fakeserver.Format(evs))
		}
	})
	row("approve", func(t *testing.T) {
		id := srv.Prompt("write")
		l.answer(t, id, protocol.AllowOnce)
		end := l.waitEnd(t, id)
		if b, err := os.ReadFile(filepath.Join(l.dir, "note.txt")); err != nil || string(b) != "hi\n" || end.StopReason != protocol.StopEndTurn {
			t.Errorf("note.txt = %q, %v; turn:\n%s", b, err, fakeserver.Format(l.turnEvents(id)))
		}
	})
	row("deny", func(t *testing.T) {
		os.Remove(filepath.Join(l.dir, "note.txt"))
		id := srv.Prompt("write")
		l.answer(t, id, protocol.RejectOnce)
		l.waitEnd(t, id)
		evs := l.turnEvents(id)
		if _, err := os.Stat(filepath.Join(l.dir, "note.txt")); err == nil || countOf(evs, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventToolCallEnd && ev.Status == protocol.ToolDenied
		}) != 1 {
			t.Errorf("the denied write ran or its tool is not denied:\n%s", fakeserver.Format(evs))
		}
	})
	row("abort_mid_stream", func(t *testing.T) {
		id := srv.Prompt("slow")
		srv.Wait(t, "the slow stream", func(evs []protocol.Event) bool {
			return fakeserver.Has(evs, func(ev protocol.Event) bool {
				return ev.Type == protocol.EventTextDelta && strings.Contains(ev.Delta, "w3")
			})
		})
		srv.Send(protocol.Command{Type: protocol.CommandAbort})
		if end := l.waitEnd(t, id); end.StopReason != protocol.StopCancelled {
			t.Errorf("aborted turn ended %s", end.StopReason)
		}
	})
	row("back_to_back_and_usage", func(t *testing.T) {
		a := srv.Prompt("hello")
		b := srv.Prompt("hello again")
		l.waitEnd(t, a)
		l.waitEnd(t, b)
		for _, id := range []int64{a, b} {
			evs := l.turnEvents(id)
			if countOf(evs, typed(protocol.EventTextEnd)) == 0 {
				t.Errorf("turn %d has no text:\n%s", id, fakeserver.Format(evs))
			}
		}
		if !fakeserver.Has(srv.Events(), typed(protocol.EventUsageUpdated)) {
			t.Errorf("no usage_updated in the session")
		}
	})
	row("two_turns_with_memory", func(t *testing.T) {
		id := srv.Prompt("recall")
		l.waitEnd(t, id)
		var text string
		for _, ev := range l.turnEvents(id) {
			if ev.Type == protocol.EventTextEnd {
				text += ev.Text
			}
		}
		if !strings.Contains(text, "think") || !strings.Contains(text, "hello again") {
			t.Errorf("the model did not see the earlier turns: %q", text)
		}
	})
	row("abort_while_permission_pending", func(t *testing.T) {
		id := srv.Prompt("write")
		srv.Wait(t, "a permission request", func(evs []protocol.Event) bool {
			return fakeserver.Has(evs, func(ev protocol.Event) bool {
				return ev.Type == protocol.EventPermissionRequested && strings.HasPrefix(ev.ID, "turn-"+strconv.FormatInt(id, 10)+":")
			})
		})
		srv.Send(protocol.Command{Type: protocol.CommandAbort})
		end := l.waitEnd(t, id)
		evs := l.turnEvents(id)
		resolved := countOf(evs, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventPermissionResolved && ev.Outcome == protocol.OutcomeCancelled
		})
		if end.StopReason != protocol.StopCancelled || resolved != 1 {
			t.Errorf("turn:\n%s", fakeserver.Format(evs))
		}
	})
	row("abort_mid_tool", func(t *testing.T) {
		id := srv.Prompt("sleepy")
		// Approve the command if the agent asks.
		stopAnswering := make(chan struct{})
		answered := make(chan struct{})
		go func() {
			defer close(answered)
			prefix := "turn-" + strconv.FormatInt(id, 10) + ":"
			for {
				for _, ev := range srv.Events() {
					if ev.Type == protocol.EventPermissionRequested && strings.HasPrefix(ev.ID, prefix) {
						for _, o := range ev.Options {
							if o.Kind == protocol.AllowOnce {
								srv.Send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: ev.ID, OptionID: o.ID})
								return
							}
						}
					}
				}
				select {
				case <-stopAnswering:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		pid := waitProcess(t, "sleep\x00"+fakemodel.SleepyArg+"\x00")
		close(stopAnswering)
		<-answered
		srv.Send(protocol.Command{Type: protocol.CommandAbort})
		if end := l.waitEnd(t, id); end.StopReason != protocol.StopCancelled {
			t.Errorf("aborted turn ended %s", end.StopReason)
		}
		waitGone(t, pid)
	})
}

// recordACP writes, with -record, the run's transcript and events as
// testdata/<name>.jsonl and testdata/<name>.events.jsonl, which TestReplay
// replays. Call it after l.stop.
func recordACP(t *testing.T, l *liveACP, name string) {
	t.Helper()
	srv := l.srv
	if *record {
		var evs []protocol.Event
		for _, ev := range srv.Events() {
			early := ev.Type == protocol.EventAgentStarted && ev.Agent != nil && ev.Agent.Version == ""
			if ev.Type != protocol.EventHeartbeat && ev.Type != protocol.EventAgentExited && !early {
				evs = append(evs, ev)
			}
		}
		r := strings.NewReplacer(l.dir, sandboxWork)
		writeFile(t, "testdata/"+name+".jsonl", r.Replace(l.transcript.String()))
		writeFile(t, "testdata/"+name+".events.jsonl", r.Replace(fakeserver.Format(versionless(evs))))
	}
}

// waitEndAnswering waits for turn id to end, answering any permission
// request on the way with the option of kind. The answers are sent
// outside Wait's condition, which runs under the fake server's lock.
func waitEndAnswering(t *testing.T, l *liveACP, id int64, kind protocol.OptionKind) protocol.Event {
	t.Helper()
	turn := "turn-" + strconv.FormatInt(id, 10)
	answered := map[string]bool{}
	for {
		var end *protocol.Event
		var ask []protocol.Event
		l.srv.Wait(t, turn+" to end", func(evs []protocol.Event) bool {
			end, ask = nil, ask[:0]
			for _, ev := range evs {
				if ev.Type == protocol.EventPermissionRequested && strings.HasPrefix(ev.ID, turn+":") && !answered[ev.ID] {
					ask = append(ask, ev)
				}
				if ev.Type == protocol.EventTurnCompleted && ev.TurnID == turn {
					end = &ev
				}
			}
			return end != nil || len(ask) > 0
		})
		if end != nil {
			return *end
		}
		for _, ev := range ask {
			answered[ev.ID] = true
			for _, o := range ev.Options {
				if o.Kind == kind {
					l.srv.Send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: ev.ID, OptionID: o.ID})
					break
				}
			}
		}
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %s", path)
}

// waitProcess waits for a process whose /proc cmdline is cmdline.
func waitProcess(t *testing.T, cmdline string) int {
	t.Helper()
	return fakeserver.WaitProcess(t, cmdline)
}

// waitGone waits for pid to exit (a zombie counts as gone).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	fakeserver.WaitGone(t, pid)
}

// TestClaudeAgentACPResume: the agent of a restarted agentd (same state
// dir) loads the ACP session of the one before with session/load: the
// model gets the earlier prompt with the new one, and the history the
// agent replays while loading is not posted again.
func TestClaudeAgentACPResume(t *testing.T) {
	bin := os.Getenv("REIN_CLAUDE_AGENT_ACP_BIN")
	if bin == "" {
		t.Skip("REIN_CLAUDE_AGENT_ACP_BIN is not set: run `make test-agent-claude-agent-acp` (the unit tests cover session/load without the CLI)")
	}
	api := fakemodel.NewAnthropic(t)
	acpResume(t, []string{bin}, claudeAgentACPEnv(t, api), "claude-agent-acp")
}

// acpResume runs the agent command twice on one state dir: the second
// agentd's agent loads the first one's ACP session (session/load), so the
// model gets the earlier prompt with the new one, and the history the
// agent replays while loading is not posted again. With -record the
// second run is testdata/<name>-resume.*; its --acp-mode is modes[name].
func acpResume(t *testing.T, command, env []string, name string) {
	t.Helper()
	srv := fakeserver.New(t, "acp-live")
	dir, state := t.TempDir(), t.TempDir()
	l := startLiveACPCmd(t, srv, dir, state, command, env, modes[name])
	l.waitEnd(t, srv.Prompt("think"))
	l.stop()
	texts := countOf(srv.Events(), typed(protocol.EventTextEnd))
	first := len(srv.Events())

	l = startLiveACPCmd(t, srv, dir, state, command, env, modes[name])
	id := srv.Prompt("recall")
	l.waitEnd(t, id)
	evs := srv.Events()
	if countOf(evs, typed(protocol.EventNotice)) > 0 {
		t.Errorf("a notice (session not loaded?):\n%s", fakeserver.Format(evs))
	}
	turn := l.turnEvents(id)
	if !fakeserver.Has(turn, func(ev protocol.Event) bool {
		return ev.Type == protocol.EventTextEnd && strings.HasPrefix(ev.Text, "Earlier prompts: ") && strings.Contains(ev.Text, "think")
	}) {
		t.Errorf("the resumed agent did not send the earlier prompt:\n%s", fakeserver.Format(turn))
	}
	if n := countOf(evs, typed(protocol.EventTextEnd)); n != texts+1 {
		t.Errorf("%d text_end after the second run, want %d (the loaded history posted again?):\n%s", n, texts+1, fakeserver.Format(evs))
	}
	l.stop()
	if *record {
		// The second run: session/load, the replayed history, a turn.
		var own []protocol.Event
		for _, ev := range srv.Events()[first:] {
			early := ev.Type == protocol.EventAgentStarted && ev.Agent != nil && ev.Agent.Version == ""
			if ev.Type != protocol.EventHeartbeat && ev.Type != protocol.EventAgentExited && !early {
				own = append(own, ev)
			}
		}
		r := strings.NewReplacer(l.dir, sandboxWork)
		writeFile(t, "testdata/"+name+"-resume.jsonl", r.Replace(l.transcript.String()))
		writeFile(t, "testdata/"+name+"-resume.events.jsonl", r.Replace(fakeserver.Format(versionless(own))))
	}
}

// cliVersion runs command with --version and returns the version it
// prints (the last word of its first line: "2.1.3 (Claude Code)" aside,
// CLIs print just the number).
func cliVersion(t *testing.T, command string) string {
	t.Helper()
	out, err := exec.Command(command, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", command, err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	f := strings.Fields(line)
	if len(f) == 0 {
		t.Fatalf("%s --version printed nothing", command)
	}
	return f[len(f)-1]
}

// checkAgentVersion expects the agent's own agent_started to report the
// version its CLI reports: the transcripts leave versions out, so an
// upgrade changes no expected event.
func checkAgentVersion(t *testing.T, l *liveACP, want string) {
	t.Helper()
	if !fakeserver.Has(l.srv.Events(), func(ev protocol.Event) bool {
		return ev.Type == protocol.EventAgentStarted && ev.Agent != nil && ev.Agent.Version == want
	}) {
		t.Errorf("no agent_started with version %q:\n%s", want, fakeserver.Format(l.srv.Events()))
	}
}

// requestWith reports whether some request (the prompts it carried) holds
// both first, an earlier turn's prompt, and then, the turn asking.
func requestWith(reqs [][]string, first, then string) bool {
	for _, r := range reqs {
		if slices.Contains(r, first) && slices.Contains(r, then) {
			return true
		}
	}
	return false
}
