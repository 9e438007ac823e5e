package codex

import (
	"encoding/json"
	"path"
	"strings"

	"github.com/rein-ai/rein/protocol"
)

// toolItems are the item types shown as generic tool calls: started and
// completed, with the item itself as input and result.
var toolItems = map[string]bool{
	"webSearch": true, "imageView": true, "dynamicToolCall": true,
	"collabAgentToolCall": true, "imageGeneration": true,
}

// item maps item/started (done=false) and item/completed.
func (a *adapter) item(t *turnState, done bool, raw json.RawMessage) {
	var it item
	if err := json.Unmarshal(raw, &it); err != nil || it.ID == "" {
		a.log.Warn("undecodable codex item", "err", err)
		return
	}
	st := t.items[it.ID]
	if st == nil {
		st = &itemState{id: itemID(t, it.ID), kind: it.Type}
		t.items[it.ID] = st
	}
	if done {
		// Item ids are namespaced by turn and never reused within one.
		defer delete(t.items, it.ID)
	}
	switch it.Type {
	case "agentMessage":
		if done {
			a.emit(protocol.Event{Type: protocol.EventTextEnd, ID: st.id, Text: it.Text})
		}
	case "reasoning":
		if done {
			a.reasoningEnd(st, it)
		}
	case "commandExecution":
		a.commandItem(t, st, done, it)
	case "fileChange":
		a.fileChange(t, st, done, it)
	case "mcpToolCall":
		if !st.started {
			a.startTool(st, it.Server+"."+it.Tool, "mcp", it.Server+"/"+it.Tool, it.Arguments)
		}
		if done {
			end := protocol.Event{Type: protocol.EventToolCallEnd, ID: st.id, Status: protocol.ToolCompleted, Result: nullless(it.Result)}
			if it.Status == "failed" || it.ToolError != nil {
				end.Status = protocol.ToolFailed
				if it.ToolError != nil {
					end.Error = it.ToolError.Message
				}
			}
			a.emit(end)
		}
	default:
		if !toolItems[it.Type] {
			// userMessage is agentd's own user_message; plans, hooks,
			// compaction and review markers have no Rein artifact.
			a.log.Debug("ignoring codex item", "type", it.Type)
			return
		}
		if !st.started {
			a.startTool(st, it.Type, "other", "", raw)
		}
		if done {
			status := protocol.ToolCompleted
			if it.Status == "failed" {
				status = protocol.ToolFailed
			}
			a.emit(protocol.Event{Type: protocol.EventToolCallEnd, ID: st.id, Status: status, Result: raw})
		}
	}
}

// startTool reports a tool call and that it runs. Codex items start
// running: approval, when needed, comes after item/started.
func (a *adapter) startTool(st *itemState, name, kind, title string, input json.RawMessage) {
	st.started = true
	a.emit(protocol.Event{Type: protocol.EventToolCallStart, ID: st.id, Name: name, Kind: kind, Title: title, Input: nullless(input)})
	a.emit(protocol.Event{Type: protocol.EventToolCallUpdate, ID: st.id, Status: protocol.ToolRunning})
}

func nullless(b json.RawMessage) json.RawMessage {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return b
}

// commandTitle is the whole command as the model wrote it. Codex wraps it
// as `/bin/bash -lc '...'`; its parsed actions are not the title: for
// `echo hi && ls` the only action is `ls`.
func commandTitle(command string, actions []commandAction) string {
	if inner, ok := unwrapShell(command); ok {
		return inner
	}
	if len(actions) == 1 && actions[0].Command != "" && command == "" {
		return actions[0].Command
	}
	return command
}

// unwrapShell returns SCRIPT of `[/path/]bash|sh|zsh -c|-lc SCRIPT` where
// SCRIPT is one shell word (quoted as Codex quotes it).
func unwrapShell(command string) (string, bool) {
	words, ok := shellWords(command)
	if !ok || len(words) != 3 || (words[1] != "-c" && words[1] != "-lc") {
		return "", false
	}
	switch path.Base(words[0]) {
	case "bash", "sh", "zsh":
		return words[2], true
	}
	return "", false
}

// shellWords splits s into words as a POSIX shell would for quoting
// (single and double quotes, backslashes); false if a quote is open.
func shellWords(s string) ([]string, bool) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, false
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, true
}

// command_ maps a commandExecution item: a shell tool whose streamed
// output arrives as item/commandExecution/outputDelta.
func (a *adapter) commandItem(t *turnState, st *itemState, done bool, it item) {
	if !st.started {
		a.startTool(st, "shell", "execute", commandTitle(it.Command, it.CommandActions),
			rawJSON(map[string]any{"command": it.Command, "cwd": it.Cwd}))
	}
	if !done {
		return
	}
	end := protocol.Event{Type: protocol.EventToolCallEnd, ID: st.id, Status: endStatus(st, it.Status), ExitCode: it.ExitCode}
	if end.Status == protocol.ToolCompleted && it.ExitCode != nil && *it.ExitCode != 0 {
		end.Status = protocol.ToolFailed
	}
	// The final output replaces what streamed. One over the size limits
	// is left out (the uploader's fit), so what streamed stands.
	if it.AggregatedOutput != nil {
		end.Output = *it.AggregatedOutput
	}
	a.emit(end)
}

// endStatus is a command's or patch's final status: declined after its
// approval was dismissed is cancelled, as the dismissed permission says.
func endStatus(st *itemState, s string) protocol.ToolStatus {
	status := toolStatus(s)
	if status == protocol.ToolDenied && st.dismissed {
		return protocol.ToolCancelled
	}
	return status
}

func toolStatus(s string) protocol.ToolStatus {
	switch s {
	case "completed":
		return protocol.ToolCompleted
	case "declined":
		return protocol.ToolDenied
	case "inProgress":
		return protocol.ToolRunning
	}
	return protocol.ToolFailed
}

// fileChange maps an apply_patch item: a tool call, and one file_changed
// per file once the patch applied.
func (a *adapter) fileChange(t *turnState, st *itemState, done bool, it item) {
	if !st.started {
		paths := make([]string, 0, len(it.Changes))
		type change struct {
			Path string `json:"path"`
			Kind string `json:"kind"`
		}
		input := make([]change, 0, len(it.Changes))
		for _, c := range it.Changes {
			paths = append(paths, c.Path)
			input = append(input, change{c.Path, c.Kind.Type})
		}
		a.startTool(st, "apply_patch", "edit", strings.Join(paths, ", "), rawJSON(map[string]any{"changes": input}))
	}
	if !done {
		return
	}
	status := endStatus(st, it.Status)
	if status == protocol.ToolCompleted {
		for _, c := range it.Changes {
			ev := protocol.Event{Type: protocol.EventFileChanged, Path: c.Path, Change: protocol.ChangeUpdate, Diff: c.Diff, ToolCallID: st.id}
			switch c.Kind.Type {
			case "add":
				ev.Change = protocol.ChangeAdd
			case "delete":
				ev.Change = protocol.ChangeDelete
			}
			if c.Kind.MovePath != nil && *c.Kind.MovePath != "" {
				// A move: the file now lives at the new path.
				ev.Path = *c.Kind.MovePath
			}
			a.emit(ev) // a diff over the size limits is cut (the uploader's fit)
		}
	}
	a.emit(protocol.Event{Type: protocol.EventToolCallEnd, ID: st.id, Status: status})
}

// delta maps the streaming notifications of an open item.
func (a *adapter) delta(t *turnState, method string, n deltaNotification) {
	st := t.items[n.ItemID]
	if st == nil {
		// A delta may come without item/started (never seen, but cheap).
		st = &itemState{id: itemID(t, n.ItemID)}
		t.items[n.ItemID] = st
	}
	switch method {
	case "item/agentMessage/delta":
		a.emit(protocol.Event{Type: protocol.EventTextDelta, ID: st.id, Delta: n.Delta})
	case "item/reasoning/summaryTextDelta":
		st.summary = true
		a.reasoningDelta(st, n.SummaryIndex, n.Delta)
	case "item/reasoning/textDelta":
		if st.summary {
			return // the summary is what is shown
		}
		a.emit(protocol.Event{Type: protocol.EventReasoningDelta, ID: st.id, Delta: n.Delta})
		st.streamed.WriteString(n.Delta)
	case "item/commandExecution/outputDelta":
		if n.Delta != "" {
			a.emit(protocol.Event{Type: protocol.EventToolOutputDelta, ID: st.id, Delta: n.Delta})
		}
	}
}

// reasoningDelta streams a summary delta, separating summary parts with a
// blank line so the streamed text equals reasoningEnd's.
func (a *adapter) reasoningDelta(st *itemState, part int, delta string) {
	if st.lastPart < part {
		delta = "\n\n" + delta
	}
	st.lastPart = part
	a.emit(protocol.Event{Type: protocol.EventReasoningDelta, ID: st.id, Delta: delta})
	st.streamed.WriteString(delta)
}

// reasoningEnd closes a reasoning item with its summary (or, without one,
// its raw text). Reasoning with neither is encrypted: redacted.
func (a *adapter) reasoningEnd(st *itemState, it item) {
	text := strings.Join(it.Summary, "\n\n")
	if text == "" {
		var parts []string
		_ = json.Unmarshal(it.Content, &parts) // absent or not text: no raw parts
		text = strings.Join(parts, "\n\n")
	}
	ev := protocol.Event{Type: protocol.EventReasoningEnd, ID: st.id, Text: text}
	if text == "" && st.streamed.Len() == 0 {
		ev.Redacted = true
	}
	a.emit(ev)
}
