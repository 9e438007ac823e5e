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

// Gemini is a scripted Gemini API (generativelanguage v1beta) for Gemini
// CLI: streamGenerateContent answers as server-sent events, chosen by the
// current turn's prompt and by how many model replies that prompt already
// had, as Anthropic's are (see ServeHTTP). Point the CLI at it with
// GOOGLE_GEMINI_BASE_URL and any GEMINI_API_KEY.
type Gemini struct {
	*httptest.Server
	tb testing.TB

	mu       sync.Mutex
	n        int
	requests [][]string
}

// NewGemini starts the server on loopback; it stops when the test ends.
func NewGemini(tb testing.TB) *Gemini {
	tb.Helper()
	g := &Gemini{tb: tb}
	g.Server = httptest.NewServer(g)
	tb.Cleanup(g.Server.Close)
	return g
}

// Requests returns, per streamed request so far, the user's prompts it
// carried, oldest first: what the CLI sent the model of the conversation.
func (g *Gemini) Requests() [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([][]string, len(g.requests))
	copy(out, g.requests)
	return out
}

type geminiPart struct {
	Text             string          `json:"text,omitempty"`
	Thought          bool            `json:"thought,omitempty"`
	FunctionCall     json.RawMessage `json:"functionCall,omitempty"`
	FunctionResponse json.RawMessage `json:"functionResponse,omitempty"`
}

type geminiContent struct {
	Role  string       `json:"role"`
	Parts []geminiPart `json:"parts"`
}

// geminiUserTexts are the texts of a user content that the user wrote: not
// function responses, not the session context Gemini CLI adds.
func geminiUserTexts(c geminiContent) []string {
	if c.Role != "user" {
		return nil
	}
	var out []string
	for _, p := range c.Parts {
		if p.Text != "" && len(p.FunctionResponse) == 0 && !strings.HasPrefix(p.Text, "<session_context>") {
			out = append(out, p.Text)
		}
	}
	return out
}

// geminiTurnPrompt finds the latest user prompt and counts the model
// contents after it.
func geminiTurnPrompt(cs []geminiContent) (prompt string, step int) {
	for i := len(cs) - 1; i >= 0; i-- {
		if cs[i].Role == "model" {
			step++
			continue
		}
		if texts := geminiUserTexts(cs[i]); len(texts) > 0 {
			return strings.Join(texts, "\n"), step
		}
	}
	return "", step
}

// ServeHTTP answers POST /v1beta/models/<model>:streamGenerateContent and
// :generateContent (the CLI's side questions, answered "OK." or, when it
// asks for JSON, that the user speaks next); anything else is 404.
//
// Prompts containing:
//
//	think  a thought, then text
//	run    text and run_shell_command `echo rein-bash-ok`
//	write  write_file of note.txt ("hi\n")
//	recall "Earlier prompts: " and every user prompt in the request
//	sleepy run_shell_command `echo start && sleep SleepyArg`
//	slow   three words of text, then a stall until the client goes away
//
// After a function response (step > 0) the answer is "Done.".
func (g *Gemini) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	model, method, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v1beta/models/"), ":")
	if r.Method != http.MethodPost || !ok || model == "" || (method != "streamGenerateContent" && method != "generateContent") {
		g.tb.Logf("fake gemini: %s %s: 404", r.Method, r.URL)
		http.NotFound(w, r)
		return
	}
	var req struct {
		Contents         []geminiContent `json:"contents"`
		GenerationConfig struct {
			ResponseMimeType string `json:"responseMimeType"`
		} `json:"generationConfig"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	usage := map[string]any{"promptTokenCount": 100, "candidatesTokenCount": 12, "totalTokenCount": 112, "cachedContentTokenCount": 20}
	if method == "generateContent" {
		text := "OK."
		if req.GenerationConfig.ResponseMimeType == "application/json" {
			text = `{"next_speaker": "user", "reasoning": "The model answered."}`
		}
		g.tb.Logf("fake gemini: side request to %s: %q", model, text)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"candidates": []any{map[string]any{
			"content": map[string]any{"role": "model", "parts": []any{map[string]any{"text": text}}}, "finishReason": "STOP", "index": 0,
		}}, "usageMetadata": usage})
		return
	}
	prompt, step := geminiTurnPrompt(req.Contents)
	var prompts []string
	for _, c := range req.Contents {
		prompts = append(prompts, geminiUserTexts(c)...)
	}
	g.mu.Lock()
	g.n++
	n := g.n
	g.requests = append(g.requests, prompts)
	g.mu.Unlock()
	g.tb.Logf("fake gemini: request %d: prompt %q step %d", n, prompt, step)

	w.Header().Set("Content-Type", "text/event-stream")
	send := func(parts []map[string]any, last bool) {
		cand := map[string]any{"content": map[string]any{"role": "model", "parts": parts}, "index": 0}
		chunk := map[string]any{"candidates": []any{cand}, "modelVersion": model, "responseId": fmt.Sprintf("resp_%02d", n)}
		if last {
			cand["finishReason"] = "STOP"
			chunk["usageMetadata"] = usage
		}
		b, _ := json.Marshal(chunk)
		fmt.Fprintf(w, "data: %s\n\n", b)
		w.(http.Flusher).Flush()
	}
	text := func(s string) map[string]any { return map[string]any{"text": s} }
	call := func(name string, args map[string]any) map[string]any {
		return map[string]any{"functionCall": map[string]any{"name": name, "args": args}}
	}
	switch {
	case step > 0:
		send([]map[string]any{text("Done.")}, true)
	case strings.Contains(prompt, "think"):
		send([]map[string]any{{"text": "**Greeting**\nThe user wants a greeting.", "thought": true}}, false)
		send([]map[string]any{text("Hello ")}, false)
		send([]map[string]any{text("from the ")}, false)
		send([]map[string]any{text("fake model.")}, true)
	case strings.Contains(prompt, "run"):
		send([]map[string]any{text("Running it.")}, false)
		send([]map[string]any{call("run_shell_command", map[string]any{"command": "echo rein-bash-ok", "description": "Print a marker"})}, true)
	case strings.Contains(prompt, "write"):
		send([]map[string]any{call("write_file", map[string]any{"file_path": "note.txt", "content": "hi\n"})}, true)
	case strings.Contains(prompt, "recall"):
		send([]map[string]any{text("Earlier prompts: " + strings.Join(prompts, " | "))}, true)
	case strings.Contains(prompt, "sleepy"):
		send([]map[string]any{call("run_shell_command", map[string]any{"command": "echo start && sleep " + SleepyArg, "description": "Wait"})}, true)
	case strings.Contains(prompt, "slow"):
		for _, s := range []string{"w1 ", "w2 ", "w3 "} {
			send([]map[string]any{text(s)}, false)
		}
		<-r.Context().Done() // the stream stalls until the CLI aborts it
	default:
		send([]map[string]any{text("OK.")}, true)
	}
}
