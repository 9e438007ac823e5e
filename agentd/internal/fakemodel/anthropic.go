package fakemodel

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Anthropic is a scripted Anthropic Messages API for Claude Code and the
// agents built on it (claude-agent-acp): it streams
// SSE answers chosen by the current turn's prompt (see reply) and by how
// many model replies that prompt already had (step). Message and tool use
// ids count requests, so a run is deterministic.
type Anthropic struct {
	*httptest.Server
	tb testing.TB

	mu       sync.Mutex
	n        int
	requests [][]string
}

// Requests returns, per request so far (title requests aside), the
// user's prompts it carried, oldest first: what the agent sent the model
// of the conversation.
func (a *Anthropic) Requests() [][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([][]string, len(a.requests))
	copy(out, a.requests)
	return out
}

// NewAnthropic starts the server on loopback; it stops when the test ends.
func NewAnthropic(tb testing.TB) *Anthropic {
	tb.Helper()
	a := &Anthropic{tb: tb}
	a.Server = httptest.NewServer(a)
	tb.Cleanup(a.Server.Close)
	return a
}

type apiMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type apiBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func messageBlocks(raw json.RawMessage) []apiBlock {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []apiBlock{{Type: "text", Text: s}}
	}
	var bs []apiBlock
	_ = json.Unmarshal(raw, &bs)
	return bs
}

// turnPrompt finds the latest user message with text of its own (not tool
// results, not the reminders Claude Code adds) and counts the assistant
// messages after it.
func turnPrompt(msgs []apiMessage) (prompt string, step int) {
	for i := len(msgs) - 1; i >= 0; i-- {
		switch msgs[i].Role {
		case "assistant":
			step++
		case "user":
			var texts []string
			for _, b := range messageBlocks(msgs[i].Content) {
				switch {
				case b.Type == "text" && !strings.HasPrefix(b.Text, "<system-reminder>"):
					texts = append(texts, b.Text)
				}
			}
			// A prompt may share its message with the result of a tool
			// an abort cut off: its text still starts a new turn.
			if len(texts) > 0 {
				return strings.Join(texts, "\n"), step
			}
		}
	}
	return "", step
}

// sseWriter writes Messages API stream events.
type sseWriter struct {
	w     http.ResponseWriter
	index int
}

func (s *sseWriter) send(v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", v["type"], b)
	s.w.(http.Flusher).Flush()
}

func (s *sseWriter) block(start map[string]any, deltas ...map[string]any) {
	s.send(map[string]any{"type": "content_block_start", "index": s.index, "content_block": start})
	for _, d := range deltas {
		s.send(map[string]any{"type": "content_block_delta", "index": s.index, "delta": d})
	}
	s.send(map[string]any{"type": "content_block_stop", "index": s.index})
	s.index++
}

func (s *sseWriter) text(parts ...string) {
	var ds []map[string]any
	for _, p := range parts {
		ds = append(ds, map[string]any{"type": "text_delta", "text": p})
	}
	s.block(map[string]any{"type": "text", "text": ""}, ds...)
}

func (s *sseWriter) thinking(parts ...string) {
	var ds []map[string]any
	for _, p := range parts {
		ds = append(ds, map[string]any{"type": "thinking_delta", "thinking": p})
	}
	ds = append(ds, map[string]any{"type": "signature_delta", "signature": "ZmFrZS1zaWduYXR1cmU="})
	s.block(map[string]any{"type": "thinking", "thinking": "", "signature": ""}, ds...)
}

func (s *sseWriter) toolUse(id, name string, jsonParts ...string) {
	var ds []map[string]any
	for _, p := range jsonParts {
		ds = append(ds, map[string]any{"type": "input_json_delta", "partial_json": p})
	}
	s.block(map[string]any{"type": "tool_use", "id": id, "name": name, "input": map[string]any{}}, ds...)
}

// ServeHTTP answers POST /v1/messages; anything else is 404 (Claude Code
// has nothing else to reach with nonessential traffic disabled).
//
// Prompts containing:
//
//	think  thinking, then text
//	run    text and a Bash call (echo, which Claude Code runs without asking)
//	big    a Write of big.xml, BigFile() (about 530 KB): its input is
//	       above the protocol's event size, which agentd must cut to post
//	write  a Write of note.txt, which needs permission
//	todo   a TodoWrite
//	recall "Earlier prompts: " and every user prompt in the request
//	sleepy a Bash call of `echo start && sleep SleepyArg`, which runs
//	       until killed (Claude Code refuses a standalone sleep)
//	slow   text that streams three words and then stalls until the client
//	       goes away (an abort)
//
// After a tool result (step > 0) the answer is "Done.". A request whose
// system prompt is opencode's title generator gets "Fake title".
func (a *Anthropic) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Method != http.MethodPost || r.URL.Path != "/v1/messages" {
		a.tb.Logf("fake api: %s %s: 404", r.Method, r.URL)
		http.NotFound(w, r)
		return
	}
	var req struct {
		Model    string          `json:"model"`
		Messages []apiMessage    `json:"messages"`
		System   json.RawMessage `json:"system"`
		Tools    []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	prompt, step := turnPrompt(req.Messages)
	// opencode asks a model for the session's title beside the turn's
	// own requests; the title request is answered on its own, so the
	// script (a stalled "slow" stream, a tool call) is the turn's.
	title := false
	for _, b := range messageBlocks(req.System) {
		title = title || strings.Contains(b.Text, "You are a title generator")
	}
	a.mu.Lock()
	a.n++
	n := a.n
	if !title {
		a.requests = append(a.requests, userTexts(req.Messages))
	}
	a.mu.Unlock()
	a.tb.Logf("fake api: request %d: prompt %q step %d", n, prompt, step)

	w.Header().Set("Content-Type", "text/event-stream")
	s := &sseWriter{w: w}
	s.send(map[string]any{"type": "message_start", "message": map[string]any{
		"id": fmt.Sprintf("msg_%02d", n), "type": "message", "role": "assistant", "model": req.Model,
		"content": []any{}, "stop_reason": nil, "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": 100, "output_tokens": 1, "cache_read_input_tokens": 20},
	}})
	toolID := fmt.Sprintf("toolu_%02d", n)
	// opencode's tools are bash and write (filePath), Claude Code's Bash
	// and Write (file_path).
	bash, write, pathKey := "Bash", "Write", "file_path"
	for _, t := range req.Tools {
		if t.Name == "bash" {
			bash, write, pathKey = "bash", "write", "filePath"
		}
	}
	stop := "end_turn"
	switch {
	case title:
		s.text("Fake title")
	case step > 0:
		s.text("Done.")
	case strings.Contains(prompt, "think"):
		s.thinking("The user ", "wants a greeting.")
		s.text("Hello ", "from the ", "fake model.")
	case strings.Contains(prompt, "run"):
		s.text("Running it.")
		s.toolUse(toolID, bash, `{"command": "echo rein`, `-bash-ok", "description": "Print a marker"}`)
		stop = "tool_use"
	case strings.Contains(prompt, "big"):
		content, _ := json.Marshal(BigFile())
		parts := []string{`{"` + pathKey + `": "big.xml", "content": `}
		for c := string(content); c != ""; {
			n := min(len(c), 64<<10)
			parts = append(parts, c[:n])
			c = c[n:]
		}
		s.toolUse(toolID, write, append(parts, "}")...)
		stop = "tool_use"
	case strings.Contains(prompt, "write"):
		s.toolUse(toolID, write, `{"`+pathKey+`": "note.txt", `, `"content": "hi\n"}`)
		stop = "tool_use"
	case strings.Contains(prompt, "todo"):
		s.toolUse(toolID, "TodoWrite",
			`{"todos": [{"content": "Read the code", "status": "in_progress", "activeForm": "Reading the code"}, `,
			`{"content": "Fix the bug", "status": "pending", "activeForm": "Fixing the bug"}]}`)
		stop = "tool_use"
	case strings.Contains(prompt, "recall"):
		// Memory: the answer names every earlier prompt the request
		// carries, so a test sees what the agent sent the model.
		s.text("Earlier prompts: " + strings.Join(userTexts(req.Messages), " | "))
	case strings.Contains(prompt, "sleepy"):
		s.toolUse(toolID, bash, `{"command": "echo start && sleep `+SleepyArg+`", "description": "Wait"}`)
		stop = "tool_use"
	case strings.Contains(prompt, "slow"):
		s.send(map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}})
		for _, w := range []string{"w1 ", "w2 ", "w3 "} {
			s.send(map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": w}})
		}
		<-r.Context().Done() // the stream stalls until Claude Code aborts it
		return
	default:
		s.text("OK.")
	}
	s.send(map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": stop, "stop_sequence": nil}, "usage": map[string]any{"output_tokens": 12}})
	s.send(map[string]any{"type": "message_stop"})
}

// BigFile is the file the "big" prompt writes: about 530 KB of XML, whose
// '<', '>' and '&' JSON writes as six bytes each.
func BigFile() string {
	var b strings.Builder
	for i := range 16000 {
		fmt.Fprintf(&b, "<row n=\"%d\">a &amp; b</row>\n", i)
	}
	return b.String()
}

// SleepyArg is the argument of the "sleepy" prompt's sleep: odd enough
// for a test to find the process by its command line.
const SleepyArg = "987.654"

// userTexts are the texts of the user's own messages (no tool results, no
// reminders), oldest first.
func userTexts(msgs []apiMessage) []string {
	var out []string
	for _, m := range msgs {
		if m.Role != "user" {
			continue
		}
		for _, b := range messageBlocks(m.Content) {
			if b.Type == "text" && !strings.HasPrefix(b.Text, "<system-reminder>") {
				out = append(out, b.Text)
			}
		}
	}
	return out
}
