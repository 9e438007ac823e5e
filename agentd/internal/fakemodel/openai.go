package fakemodel

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// OpenAI is a scripted OpenAI Responses API (POST /v1/responses, streamed)
// for Codex and the agents built on it (codex-acp). Each request is
// answered by a script chosen by the last user prompt it carries and by
// whether its last input item is a tool's output (see ServeHTTP). Item ids
// count requests (msg_N, rs_N), so a run is deterministic. It records what
// every request carried (Requests), so a test can check what the agent
// sent the model.
type OpenAI struct {
	*httptest.Server
	tb testing.TB
	// outside is a directory outside the agent's workspace: the "ask"
	// and "deny" commands write there, which needs escalation.
	outside string
	// sleepy is the argument of the "sleepy" prompt's sleep, unique to
	// this server so a test finds its own command among the machine's
	// processes (another test's agent may be sleeping too).
	sleepy string

	mu       sync.Mutex
	n        int
	requests []OpenAIRequest
}

// OpenAIRequest is what one POST /v1/responses carried.
type OpenAIRequest struct {
	// Prompt is the last user prompt (Codex's own context messages,
	// which start with "<", left out).
	Prompt string
	// Prompts are every user prompt in the input, oldest first.
	Prompts []string
	// Answers are the texts of the assistant messages in the input (the
	// model's earlier answers the agent sends back), oldest first.
	Answers []string
	// ToolOutput: the last input item is a tool's output.
	ToolOutput bool
}

// NewOpenAI starts the server on loopback; it stops when the test ends.
// outside is a directory outside the agent's workspace, for the prompts
// that write there.
func NewOpenAI(tb testing.TB, outside string) *OpenAI {
	tb.Helper()
	o := &OpenAI{tb: tb, outside: outside, sleepy: fmt.Sprintf("987.%09d", rand.Int64N(1e9))}
	o.Server = httptest.NewServer(o)
	tb.Cleanup(o.Server.Close)
	return o
}

// Requests returns what each request so far carried, in order.
func (o *OpenAI) Requests() []OpenAIRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]OpenAIRequest(nil), o.requests...)
}

// SleepyArg is the argument of the "sleepy" prompt's `sleep`: a number
// unique to this server. Recordings replace it with the package's
// SleepyArg, so they are the same on every run.
func (o *OpenAI) SleepyArg() string { return o.sleepy }

// The commands of the scripted tool calls, for tests that check them.
const (
	// RunCommand prints two lines with a pause between them, so its
	// output streams in two parts.
	RunCommand = "echo hello; sleep 0.5; echo bye"
	// AskFile and DenyFile are written in the outside directory by the
	// "ask" and "deny" prompts' commands, which need escalation.
	AskFile  = "approved.txt"
	DenyFile = "denied.txt"
)

// ServeHTTP answers POST /v1/responses; anything else is 404.
//
// By the turn's prompt (the last user message):
//
//	run     reasoning, text, and an exec_command of RunCommand
//	ask     an exec_command touching outside/AskFile with escalation
//	        (sandbox_permissions require_escalated), which an on-request
//	        policy asks the user about
//	deny    the same for outside/DenyFile (the test denies it)
//	patch   an apply_patch adding hello.txt
//	slow    text that streams three words and then stalls until the
//	        client goes away (an abort)
//	recall  "Earlier prompts: " and every user prompt the request carries
//	sleepy  an exec_command `sleep <SleepyArg()>`, which runs until killed
//	other   "Hello again."
//
// After a tool's output the answer is "Done.". Every answer but the
// stalled one ends with usage: 100 input tokens (40 cached), 20 output.
func (o *OpenAI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/responses" {
		o.tb.Logf("fake openai: %s %s: 404", r.Method, r.URL)
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
	raw, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(raw, &body)
	}
	if err != nil || len(body.Input) == 0 {
		http.Error(w, fmt.Sprintf("bad request: %v (input items: %d)", err, len(body.Input)), http.StatusBadRequest)
		return
	}
	var req OpenAIRequest
	for _, in := range body.Input {
		if in.Type != "message" || len(in.Content) == 0 {
			continue
		}
		text := in.Content[0].Text
		switch {
		case in.Role == "user" && !strings.HasPrefix(text, "<"): // not Codex's own context
			req.Prompt = text
			req.Prompts = append(req.Prompts, text)
		case in.Role == "assistant":
			req.Answers = append(req.Answers, text)
		}
	}
	last := body.Input[len(body.Input)-1].Type
	req.ToolOutput = last == "function_call_output" || last == "custom_tool_call_output"
	o.mu.Lock()
	o.n++
	n := o.n
	o.requests = append(o.requests, req)
	o.mu.Unlock()
	o.tb.Logf("fake openai: request %d: prompt %q, tool output %v", n, req.Prompt, req.ToolOutput)

	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	s := &responsesWriter{w: w, f: w.(http.Flusher)}
	rid := fmt.Sprintf("resp_%d", n)
	msg := fmt.Sprintf("msg_%d", n)
	s.send(map[string]any{"type": "response.created", "response": map[string]any{"id": rid}})
	switch {
	case req.ToolOutput:
		s.message(msg, "Done.")
	case req.Prompt == "run":
		s.reasoning(fmt.Sprintf("rs_%d", n), "Thinking ", "about it")
		s.message(msg, "Running ", "it.")
		s.functionCall("call_run", "exec_command", map[string]any{"cmd": RunCommand, "login": false, "yield_time_ms": 5000})
	case req.Prompt == "ask" || req.Prompt == "deny":
		// Writing outside the workspace needs escalation, which the
		// on-request policy asks the user about.
		file := AskFile
		if req.Prompt == "deny" {
			file = DenyFile
		}
		s.functionCall("call_"+req.Prompt, "exec_command", map[string]any{
			"cmd": "touch " + filepath.Join(o.outside, file), "login": false, "yield_time_ms": 5000,
			"sandbox_permissions": "require_escalated", "justification": "write outside the workspace",
		})
	case req.Prompt == "patch":
		s.send(map[string]any{"type": "response.output_item.done", "item": map[string]any{
			"type": "custom_tool_call", "id": "ctc_patch", "call_id": "call_patch", "name": "apply_patch",
			"input": "*** Begin Patch\n*** Add File: hello.txt\n+hi there\n*** End Patch\n",
		}})
	case req.Prompt == "slow":
		// A long answer that stalls after three words until the client
		// goes away: an abort always lands mid-stream.
		s.send(map[string]any{"type": "response.output_item.added", "item": map[string]any{"type": "message", "role": "assistant", "id": msg, "content": []any{}}})
		for _, d := range []string{"w1 ", "w2 ", "w3 "} {
			s.send(map[string]any{"type": "response.output_text.delta", "item_id": msg, "output_index": 0, "content_index": 0, "delta": d})
		}
		<-r.Context().Done()
		return
	case req.Prompt == "recall":
		// Memory: the answer names the prompts the request carries.
		s.message(msg, "Earlier prompts: "+strings.Join(req.Prompts, " | "))
	case req.Prompt == "sleepy":
		// A command that runs until it is killed; its odd argument lets
		// a test find it (Codex's sandbox has a pid namespace of its
		// own, so the command cannot report its pid).
		s.functionCall("call_sleepy", "exec_command", map[string]any{"cmd": "sleep " + o.sleepy, "login": false, "yield_time_ms": 30000})
	default:
		s.message(msg, "Hello ", "again.")
	}
	s.send(map[string]any{"type": "response.completed", "response": map[string]any{"id": rid, "usage": map[string]any{
		"input_tokens": 100, "input_tokens_details": map[string]any{"cached_tokens": 40},
		"output_tokens": 20, "output_tokens_details": map[string]any{"reasoning_tokens": 5}, "total_tokens": 120,
	}}})
}

// responsesWriter writes Responses API stream events.
type responsesWriter struct {
	w io.Writer
	f http.Flusher
}

func (s *responsesWriter) send(ev map[string]any) {
	b, _ := json.Marshal(ev)
	fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", ev["type"], b)
	s.f.Flush()
}

func (s *responsesWriter) message(id string, parts ...string) {
	s.send(map[string]any{"type": "response.output_item.added", "item": map[string]any{"type": "message", "role": "assistant", "id": id, "content": []any{}}})
	for _, p := range parts {
		s.send(map[string]any{"type": "response.output_text.delta", "item_id": id, "output_index": 0, "content_index": 0, "delta": p})
	}
	s.send(map[string]any{"type": "response.output_item.done", "item": map[string]any{"type": "message", "role": "assistant", "id": id,
		"content": []any{map[string]any{"type": "output_text", "text": strings.Join(parts, "")}}}})
}

func (s *responsesWriter) reasoning(id string, parts ...string) {
	s.send(map[string]any{"type": "response.output_item.added", "item": map[string]any{"type": "reasoning", "id": id, "summary": []any{}}})
	for _, p := range parts {
		s.send(map[string]any{"type": "response.reasoning_summary_text.delta", "item_id": id, "summary_index": 0, "delta": p})
	}
	s.send(map[string]any{"type": "response.output_item.done", "item": map[string]any{"type": "reasoning", "id": id,
		"summary": []any{map[string]any{"type": "summary_text", "text": strings.Join(parts, "")}}}})
}

func (s *responsesWriter) functionCall(callID, name string, args map[string]any) {
	a, _ := json.Marshal(args)
	s.send(map[string]any{"type": "response.output_item.done", "item": map[string]any{
		"type": "function_call", "id": "fc_" + callID, "call_id": callID, "name": name, "arguments": string(a),
	}})
}

// CodexConfig is a Codex config.toml (in CODEX_HOME) that points Codex at
// the fake server at baseURL (its key in REIN_TEST_CODEX_KEY), with
// approvals on request in a workspace-write sandbox, and turns off
// everything that would reach the network (plugin sync, update checks,
// analytics).
func CodexConfig(baseURL string) string {
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
