package codex_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

var record = flag.Bool("record", false, "record the real CLI's transcript and events into testdata (needs REIN_CODEX_BIN)")

// Placeholders for the run's temporary paths in what is recorded, so the
// testdata is the same on every machine.
const (
	sandboxWork = "/sandbox/work"
	sandboxHome = "/sandbox/codex-home"
	sandboxOut  = "/sandbox/outside"
)

// codexBin returns the Codex CLI (installed by `make test-agent-codex`,
// which exports REIN_CODEX_BIN), or skips.
func codexBin(t *testing.T) string {
	t.Helper()
	p := os.Getenv("REIN_CODEX_BIN")
	if p == "" {
		t.Skip("REIN_CODEX_BIN is not set: run `make test-agent-codex` at the repo root to install @openai/codex and run the tests against it (the replay tests cover the adapter without it)")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("REIN_CODEX_BIN=%s: %v (run `make test-agent-codex`)", p, err)
	}
	return p
}

// modelServer is a fake OpenAI Responses API: each POST /v1/responses is
// answered by a scripted SSE stream chosen by the last user prompt and
// whether the request carries a tool's output.
type modelServer struct {
	*httptest.Server
	outside string // a directory outside the workspace

	mu       sync.Mutex
	n        int
	requests []string
}

func newModelServer(t *testing.T, outside string) *modelServer {
	m := &modelServer{outside: outside}
	m.Server = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.Server.Close)
	return m
}

func (m *modelServer) serve(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.requests = append(m.requests, r.Method+" "+r.URL.Path)
	m.n++
	n := m.n
	m.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/v1/responses" {
		http.NotFound(w, r)
		return
	}
	var body struct {
		Input []struct {
			Type    string `json:"type"`
			Role    string `json:"role"`
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"input"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Input) == 0 {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	prompt := ""
	var prompts []string // every user prompt the request carries
	for _, in := range body.Input {
		if in.Type == "message" && in.Role == "user" && len(in.Content) > 0 {
			prompt = in.Content[0].Text
			if !strings.HasPrefix(prompt, "<") { // not Codex's own context
				prompts = append(prompts, prompt)
			}
		}
	}
	last := body.Input[len(body.Input)-1].Type
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, f: w.(http.Flusher)}
	rid := fmt.Sprintf("resp_%d", n)
	s.send(map[string]any{"type": "response.created", "response": map[string]any{"id": rid}})
	switch {
	case last == "function_call_output" || last == "custom_tool_call_output":
		s.message(fmt.Sprintf("msg_%d", n), "Done.")
	case prompt == "run":
		s.reasoning(fmt.Sprintf("rs_%d", n), "Thinking ", "about it")
		s.message(fmt.Sprintf("msg_%d", n), "Running ", "it.")
		s.functionCall("call_run", "exec_command", map[string]any{"cmd": "echo hello; sleep 0.5; echo bye", "login": false, "yield_time_ms": 5000})
	case prompt == "ask":
		// Writing outside the workspace needs escalation, which the
		// on-request policy asks the user about.
		s.functionCall("call_ask", "exec_command", map[string]any{
			"cmd": "touch " + filepath.Join(m.outside, "approved.txt"), "login": false, "yield_time_ms": 5000,
			"sandbox_permissions": "require_escalated", "justification": "write outside the workspace",
		})
	case prompt == "patch":
		s.send(map[string]any{"type": "response.output_item.done", "item": map[string]any{
			"type": "custom_tool_call", "id": "ctc_patch", "call_id": "call_patch", "name": "apply_patch",
			"input": "*** Begin Patch\n*** Add File: hello.txt\n+hi there\n*** End Patch\n",
		}})
	case prompt == "slow":
		// A long answer that stalls after three words until the client
		// goes away (turn/interrupt): the abort always lands mid-stream.
		id := fmt.Sprintf("msg_%d", n)
		s.send(map[string]any{"type": "response.output_item.added", "item": map[string]any{"type": "message", "role": "assistant", "id": id, "content": []any{}}})
		for _, d := range []string{"w1 ", "w2 ", "w3 "} {
			s.send(map[string]any{"type": "response.output_text.delta", "item_id": id, "output_index": 0, "content_index": 0, "delta": d})
		}
		<-r.Context().Done()
		return
	case prompt == "recall":
		// Memory: the answer names the prompts the request carries.
		s.message(fmt.Sprintf("msg_%d", n), "Earlier prompts: "+strings.Join(prompts, " | "))
	case prompt == "sleepy":
		// A command that runs until it is killed; its odd argument lets
		// the test find it (Codex's sandbox has a pid namespace of its
		// own, so the command cannot report its pid).
		s.functionCall("call_sleepy", "exec_command", map[string]any{"cmd": "sleep " + sleepyArg, "login": false, "yield_time_ms": 30000})
	default:
		s.message(fmt.Sprintf("msg_%d", n), "Hello ", "again.")
	}
	s.send(map[string]any{"type": "response.completed", "response": map[string]any{"id": rid, "usage": map[string]any{
		"input_tokens": 100, "input_tokens_details": map[string]any{"cached_tokens": 40},
		"output_tokens": 20, "output_tokens_details": map[string]any{"reasoning_tokens": 5}, "total_tokens": 120,
	}}})
}

type sseWriter struct {
	w io.Writer
	f http.Flusher
}

func (s *sseWriter) send(ev map[string]any) {
	b, _ := json.Marshal(ev)
	fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", ev["type"], b)
	s.f.Flush()
}

func (s *sseWriter) message(id string, parts ...string) {
	s.send(map[string]any{"type": "response.output_item.added", "item": map[string]any{"type": "message", "role": "assistant", "id": id, "content": []any{}}})
	for _, p := range parts {
		s.send(map[string]any{"type": "response.output_text.delta", "item_id": id, "output_index": 0, "content_index": 0, "delta": p})
	}
	s.send(map[string]any{"type": "response.output_item.done", "item": map[string]any{"type": "message", "role": "assistant", "id": id,
		"content": []any{map[string]any{"type": "output_text", "text": strings.Join(parts, "")}}}})
}

func (s *sseWriter) reasoning(id string, parts ...string) {
	s.send(map[string]any{"type": "response.output_item.added", "item": map[string]any{"type": "reasoning", "id": id, "summary": []any{}}})
	for _, p := range parts {
		s.send(map[string]any{"type": "response.reasoning_summary_text.delta", "item_id": id, "summary_index": 0, "delta": p})
	}
	s.send(map[string]any{"type": "response.output_item.done", "item": map[string]any{"type": "reasoning", "id": id,
		"summary": []any{map[string]any{"type": "summary_text", "text": strings.Join(parts, "")}}}})
}

func (s *sseWriter) functionCall(callID, name string, args map[string]any) {
	a, _ := json.Marshal(args)
	s.send(map[string]any{"type": "response.output_item.done", "item": map[string]any{
		"type": "function_call", "id": "fc_" + callID, "call_id": callID, "name": name, "arguments": string(a),
	}})
}

// codexConfig points Codex at the fake model server, with approvals on
// request in a workspace-write sandbox, and turns off everything that
// would reach the network (plugin sync, update checks, analytics).
func codexConfig(baseURL string) string {
	return `model = "gpt-5.5"
model_provider = "fake"
approval_policy = "on-request"
sandbox_mode = "workspace-write"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false
remote_plugin = false
plugin_sharing = false
apps = false
in_app_updates = false
goals = false
browser_use = false
computer_use = false
api_key_model_discovery = false

[model_providers.fake]
name = "fake"
base_url = "` + baseURL + `/v1"
env_key = "REIN_TEST_CODEX_KEY"
wire_api = "responses"
`
}

// wantSession is the exact event sequence of TestCodexCLISession (and of
// its replay), with the temporary paths replaced by placeholders.
// wantSession leaves out the CLI version (see versionless): the test
// compares it with the CLI's own --version, so an upgrade changes no
// expected event.
const wantSession = `{"type":"agent_started","agent":{"name":"codex","protocol":"codex"},"model":"gpt-5.5","cwd":"/sandbox/work"}
{"type":"turn_started","turnId":"turn-1","promptId":"prompt-1","source":"user"}
{"type":"user_message","id":"user-1","promptId":"prompt-1","text":"run"}
{"type":"reasoning_delta","id":"turn-1:rs_1","delta":"Thinking "}
{"type":"reasoning_delta","id":"turn-1:rs_1","delta":"about it"}
{"type":"reasoning_end","id":"turn-1:rs_1","text":"Thinking about it"}
{"type":"text_delta","id":"turn-1:msg_1","delta":"Running "}
{"type":"text_delta","id":"turn-1:msg_1","delta":"it."}
{"type":"text_end","id":"turn-1:msg_1","text":"Running it."}
{"type":"tool_call_start","id":"turn-1:call_run","name":"shell","kind":"execute","title":"echo hello; sleep 0.5; echo bye","input":{"command":"/bin/bash -c 'echo hello; sleep 0.5; echo bye'","cwd":"/sandbox/work"}}
{"type":"tool_call_update","id":"turn-1:call_run","status":"running"}
{"type":"tool_output_delta","id":"turn-1:call_run","delta":"hello\n"}
{"type":"tool_output_delta","id":"turn-1:call_run","delta":"bye\n"}
{"type":"tool_call_end","id":"turn-1:call_run","status":"completed","output":"hello\nbye\n","exitCode":0}
{"type":"usage_updated","inputTokens":100,"outputTokens":20,"cachedInputTokens":40,"contextUsed":120,"contextSize":258400}
{"type":"text_delta","id":"turn-1:msg_2","delta":"Done."}
{"type":"text_end","id":"turn-1:msg_2","text":"Done."}
{"type":"usage_updated","inputTokens":200,"outputTokens":40,"cachedInputTokens":80,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-1","stopReason":"end_turn"}
{"type":"turn_started","turnId":"turn-2","promptId":"prompt-2","source":"user"}
{"type":"user_message","id":"user-2","promptId":"prompt-2","text":"ask"}
{"type":"tool_call_start","id":"turn-2:call_ask","name":"shell","kind":"execute","title":"touch /sandbox/outside/approved.txt","input":{"command":"/bin/bash -c 'touch /sandbox/outside/approved.txt'","cwd":"/sandbox/work"}}
{"type":"tool_call_update","id":"turn-2:call_ask","status":"running"}
{"type":"permission_requested","id":"turn-2:perm-1","title":"touch /sandbox/outside/approved.txt","input":{"command":"/bin/bash -c 'touch /sandbox/outside/approved.txt'","cwd":"/sandbox/work","reason":"write outside the workspace"},"toolCallId":"turn-2:call_ask","options":[{"id":"accept","name":"Allow","kind":"allow_once"},{"id":"acceptWithExecpolicyAmendment","name":"Always allow commands like this","kind":"allow_always"},{"id":"cancel","name":"Deny and stop the turn","kind":"reject_once"}]}
{"type":"permission_resolved","id":"turn-2:perm-1","outcome":"selected","optionId":"accept"}
{"type":"tool_call_end","id":"turn-2:call_ask","status":"completed","exitCode":0}
{"type":"usage_updated","inputTokens":100,"outputTokens":20,"cachedInputTokens":40,"contextUsed":120,"contextSize":258400}
{"type":"text_delta","id":"turn-2:msg_4","delta":"Done."}
{"type":"text_end","id":"turn-2:msg_4","text":"Done."}
{"type":"usage_updated","inputTokens":200,"outputTokens":40,"cachedInputTokens":80,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-2","stopReason":"end_turn"}
{"type":"turn_started","turnId":"turn-4","promptId":"prompt-4","source":"user"}
{"type":"user_message","id":"user-4","promptId":"prompt-4","text":"patch"}
{"type":"tool_call_start","id":"turn-4:call_patch","name":"apply_patch","kind":"edit","title":"/sandbox/work/hello.txt","input":{"changes":[{"path":"/sandbox/work/hello.txt","kind":"add"}]}}
{"type":"tool_call_update","id":"turn-4:call_patch","status":"running"}
{"type":"file_changed","toolCallId":"turn-4:call_patch","path":"/sandbox/work/hello.txt","change":"add","diff":"hi there\n"}
{"type":"tool_call_end","id":"turn-4:call_patch","status":"completed"}
{"type":"usage_updated","inputTokens":100,"outputTokens":20,"cachedInputTokens":40,"contextUsed":120,"contextSize":258400}
{"type":"text_delta","id":"turn-4:msg_6","delta":"Done."}
{"type":"text_end","id":"turn-4:msg_6","text":"Done."}
{"type":"usage_updated","inputTokens":200,"outputTokens":40,"cachedInputTokens":80,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-4","stopReason":"end_turn"}
{"type":"turn_started","turnId":"turn-5","promptId":"prompt-5","source":"user"}
{"type":"user_message","id":"user-5","promptId":"prompt-5","text":"slow"}
{"type":"text_delta","id":"turn-5:msg_7","delta":"w1 "}
{"type":"text_delta","id":"turn-5:msg_7","delta":"w2 "}
{"type":"text_delta","id":"turn-5:msg_7","delta":"w3 "}
{"type":"usage_updated","inputTokens":0,"outputTokens":0,"cachedInputTokens":0,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-5","stopReason":"cancelled"}
{"type":"turn_started","turnId":"turn-7","promptId":"prompt-7","source":"user"}
{"type":"user_message","id":"user-7","promptId":"prompt-7","text":"hello"}
{"type":"text_delta","id":"turn-7:msg_8","delta":"Hello "}
{"type":"text_delta","id":"turn-7:msg_8","delta":"again."}
{"type":"text_end","id":"turn-7:msg_8","text":"Hello again."}
{"type":"usage_updated","inputTokens":100,"outputTokens":20,"cachedInputTokens":40,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-7","stopReason":"end_turn"}
{"type":"turn_started","turnId":"turn-8","promptId":"prompt-8","source":"user"}
{"type":"user_message","id":"user-8","promptId":"prompt-8","text":"sleepy"}
{"type":"tool_call_start","id":"turn-8:call_sleepy","name":"shell","kind":"execute","title":"sleep 987.654","input":{"command":"/bin/bash -c 'sleep 987.654'","cwd":"/sandbox/work"}}
{"type":"tool_call_update","id":"turn-8:call_sleepy","status":"running"}
{"type":"usage_updated","inputTokens":100,"outputTokens":20,"cachedInputTokens":40,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-8","stopReason":"cancelled"}
`

// TestCodexCLISession drives the real `codex app-server` through agentd:
// reasoning and text, a shell command that really runs, a command that
// needs approval, a patch that adds a file, an aborted stream, and a turn
// after the abort, all in one thread.
func TestCodexCLISession(t *testing.T) {
	bin := codexBin(t)
	root := t.TempDir()
	work, home, outside := filepath.Join(root, "work"), filepath.Join(root, "home"), filepath.Join(root, "outside")
	for _, d := range []string{work, home, outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	model := newModelServer(t, outside)
	if err := os.WriteFile(filepath.Join(home, "config.toml"), []byte(codexConfig(model.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	transcript := &fakeserver.Buffer{}

	srv := fakeserver.New(t, "codex")
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + root, "CODEX_HOME=" + home, "REIN_TEST_CODEX_KEY=dummy",
		// Anything that tries the network goes to a closed port; the
		// fake model server on loopback is exempt.
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "ALL_PROXY=http://127.0.0.1:9",
		"NO_PROXY=127.0.0.1,localhost",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- agentd.Run(ctx, agentd.Options{
			Server: srv.URL, Session: srv.Session, Protocol: agentd.ProtocolCodex,
			Command: []string{bin, "app-server"}, Dir: work, Env: env,
			HeartbeatInterval: time.Hour, Logger: fakeserver.Logger(t, slog.LevelInfo), Transcript: transcript,
		})
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agentd.Run: %v", err)
			}
		}
	}
	t.Cleanup(stop)

	turnEnded := func(id string) func([]protocol.Event) bool {
		return func(evs []protocol.Event) bool {
			return fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventTurnCompleted && ev.TurnID == id })
		}
	}
	srv.Wait(t, "agent_started", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventAgentStarted })
	})
	srv.Prompt("run")
	srv.Wait(t, "turn-1 to end", turnEnded("turn-1"))

	srv.Prompt("ask")
	srv.Wait(t, "the approval request", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventPermissionRequested })
	})
	srv.Send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "turn-2:perm-1", OptionID: "accept"})
	srv.Wait(t, "turn-2 to end", turnEnded("turn-2"))
	if _, err := os.Stat(filepath.Join(outside, "approved.txt")); err != nil {
		t.Errorf("the approved command did not run: %v", err)
	}

	srv.Prompt("patch")
	srv.Wait(t, "turn-4 to end", turnEnded("turn-4"))
	if b, err := os.ReadFile(filepath.Join(work, "hello.txt")); err != nil || string(b) != "hi there\n" {
		t.Errorf("hello.txt = %q, %v; want the patch applied", b, err)
	}

	srv.Prompt("slow")
	srv.Wait(t, "the slow stream", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventTextDelta && ev.Delta == "w3 " })
	})
	srv.Send(protocol.Command{Type: protocol.CommandAbort})
	srv.Wait(t, "turn-5 to end", turnEnded("turn-5"))

	srv.Prompt("hello")
	srv.Wait(t, "turn-7 to end", turnEnded("turn-7"))

	// Abort mid-tool: the turn ends and the command's process is gone.
	srv.Prompt("sleepy")
	pid := waitProcess(t, "sleep\x00"+sleepyArg+"\x00")
	srv.Send(protocol.Command{Type: protocol.CommandAbort})
	srv.Wait(t, "turn-8 to end", turnEnded("turn-8"))
	waitGone(t, pid)
	stop()

	replacer := strings.NewReplacer(work, sandboxWork, home, sandboxHome, outside, sandboxOut)
	var evs []protocol.Event
	for _, ev := range srv.Events() {
		// agentd's own agent_started (the process runs, the handshake
		// is under way) is not the adapter's: the replay has only the
		// adapter's.
		early := ev.Type == protocol.EventAgentStarted && ev.Agent != nil && ev.Agent.Version == "" && ev.Model == ""
		if ev.Type != protocol.EventHeartbeat && ev.Type != protocol.EventAgentExited && !early {
			evs = append(evs, ev)
		}
	}
	if want := cliVersion(t, bin); evs[0].Agent == nil || evs[0].Agent.Version != want {
		t.Errorf("first event %s: want agent_started with version %q (codex --version)", fakeserver.Format(evs[:1]), want)
	}
	got := replacer.Replace(fakeserver.Format(versionless(evs)))
	if *record {
		writeFile(t, "testdata/session.jsonl", replacer.Replace(transcript.String()))
		writeFile(t, "testdata/session.events.jsonl", got)
	}
	if got != wantSession {
		t.Errorf("events:\n got:\n%s\nwant:\n%s", got, wantSession)
	}
	t.Logf("model server requests: %v", model.requests)
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %s", path)
}

// cliVersion is the version `codex --version` prints ("codex-cli 0.169.0").
func cliVersion(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", bin, err)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		t.Fatalf("%s --version printed nothing", bin)
	}
	return f[len(f)-1]
}

// sleepyArg is the sleep of the "sleepy" prompt's command.
const sleepyArg = "987.654"

// waitProcess waits for a process whose /proc cmdline is cmdline.
func waitProcess(t *testing.T, cmdline string) int {
	t.Helper()
	deadline := time.Now().Add(fakeserver.WaitTimeout)
	for {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err == nil && string(b) == cmdline {
				var pid int
				fmt.Sscanf(e.Name(), "%d", &pid)
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no process runs %q", cmdline)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitGone waits for pid to exit (a zombie counts as gone).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(fakeserver.WaitTimeout)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d, started by the aborted turn, still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCodexCLIResume: the app-server of a restarted agentd (same state
// dir) resumes the thread of the one before with thread/resume: the model
// gets the earlier prompt with the new one.
func TestCodexCLIResume(t *testing.T) {
	bin := codexBin(t)
	root := t.TempDir()
	work, home, state := filepath.Join(root, "work"), filepath.Join(root, "home"), filepath.Join(root, "state")
	for _, d := range []string{work, home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	model := newModelServer(t, root)
	if err := os.WriteFile(filepath.Join(home, "config.toml"), []byte(codexConfig(model.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := fakeserver.New(t, "codex")
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + root, "CODEX_HOME=" + home, "REIN_TEST_CODEX_KEY=dummy",
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "ALL_PROXY=http://127.0.0.1:9",
		"NO_PROXY=127.0.0.1,localhost",
	}
	transcript := &fakeserver.Buffer{}
	defer func() {
		if t.Failed() {
			t.Logf("transcript:\n%s", transcript.String())
		}
	}()
	turn := func(text string, transcript *fakeserver.Buffer) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- agentd.Run(ctx, agentd.Options{
				Server: srv.URL, Session: srv.Session, Protocol: agentd.ProtocolCodex,
				Command: []string{bin, "app-server"}, Dir: work, Env: env, StateDir: state,
				HeartbeatInterval: time.Hour, Logger: fakeserver.Logger(t, slog.LevelInfo), Transcript: transcript,
			})
		}()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agentd.Run: %v", err)
			}
		}()
		srv.WaitState(t, "an open command stream", func() bool { return srv.OpenStreams() > 0 })
		id := srv.Prompt(text)
		srv.Wait(t, "the turn to end", func(evs []protocol.Event) bool {
			return fakeserver.Has(evs, func(ev protocol.Event) bool {
				return ev.Type == protocol.EventTurnCompleted && ev.TurnID == fmt.Sprintf("turn-%d", id)
			})
		})
	}
	turn("hello", &fakeserver.Buffer{})
	first := len(srv.Events())
	turn("recall", transcript)
	evs := srv.Events()
	want := "Earlier prompts: hello | recall"
	if !fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventTextEnd && ev.Text == want }) {
		t.Errorf("no text_end %q: the second app-server did not resume the thread:\n%s", want, fakeserver.Format(evs))
	}
	// Usage is per turn: the resumed thread's earlier totals are the
	// baseline, not this turn's.
	var last protocol.Event
	for _, ev := range evs {
		if ev.Type == protocol.EventUsageUpdated {
			last = ev
		}
	}
	if last.InputTokens == nil || *last.InputTokens != 100 {
		t.Errorf("the resumed turn's usage %s; want inputTokens 100 (one request)", fakeserver.Format([]protocol.Event{last}))
	}
	if fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventNotice }) {
		t.Errorf("a notice (resume failed?):\n%s", fakeserver.Format(evs))
	}
	if *record {
		// The second run's transcript and the events its adapter
		// emitted (not agentd's own), for TestReplayResume.
		var own []protocol.Event
		for _, ev := range evs[first:] {
			early := ev.Type == protocol.EventAgentStarted && ev.Agent != nil && ev.Agent.Version == "" && ev.Model == ""
			if ev.Type != protocol.EventHeartbeat && ev.Type != protocol.EventAgentExited && !early {
				own = append(own, ev)
			}
		}
		replacer := strings.NewReplacer(work, sandboxWork, home, sandboxHome, root, "/sandbox")
		writeFile(t, "testdata/resume.jsonl", replacer.Replace(transcript.String()))
		writeFile(t, "testdata/resume.events.jsonl", replacer.Replace(fakeserver.Format(versionless(own))))
	}
}
