package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/client"
)

// ANSI styles; paint leaves text plain when colour is off.
const (
	styleBold   = "1"
	styleDim    = "2"
	styleRed    = "31"
	styleGreen  = "32"
	styleYellow = "33"
	styleBlue   = "34"
	styleCyan   = "36"
)

type painter bool

func (p painter) paint(style, s string) string {
	if !p || s == "" || style == "" {
		return s
	}
	return "\x1b[" + style + "m" + s + "\x1b[0m"
}

// transcript renders an artifact stream as an append-only terminal
// transcript. A terminal cannot take back what it printed, so it remembers,
// per artifact (seq) and field, what it has shown, and prints only the
// difference when an artifact changes: an update, a created artifact, or a
// snapshot after a reconnect all go through the same diff, so nothing is
// printed twice.
type transcript struct {
	w       io.Writer
	p       painter
	session string // for the approve/deny hints

	shown map[int64]*shownArtifact

	// The text stream last written to, while its line is unfinished.
	cur     slot
	midLine bool

	// During a replay (connect or reconnect, until snapshot_complete)
	// snapshots arrive in revision order; they are held and rendered in
	// seq order, which is the transcript's order.
	replaying bool
	held      map[int64]*protocol.Artifact
	// sent: the seqs this connection's replay sent (held may also have
	// those of a replay cut before its end).
	sent map[int64]bool
	// replaced: the stream now follows another session under this id
	// (client.ArtifactEvent.Replaced); its full replay reprints all.
	replaced bool
}

type slot struct {
	seq   int64
	field string
}

// shownArtifact is what has been printed for one artifact.
type shownArtifact struct {
	header bool              // its first line
	text   map[string]string // streamed fields: the text printed so far
	set    map[string]string // other fields: the JSON of the value last printed
}

func newTranscript(w io.Writer, color bool, session string) *transcript {
	return &transcript{w: w, p: painter(color), session: session, shown: map[int64]*shownArtifact{}}
}

// Event renders one stream event; a is the artifact it changed, as the
// client's model now holds it (nil for events that change none).
func (t *transcript) Event(ev client.ArtifactEvent, a *protocol.Artifact) {
	// Everything printed below comes from the artifact: cleaned once
	// here, no agent text reaches the terminal as a control sequence.
	a = cleanArtifact(a)
	switch ev.Name {
	case client.EventConnected:
		// A replay cut before its snapshot_complete keeps what it
		// held: the stream resumes after the last snapshot delivered,
		// so the server does not send those again.
		if !t.replaying {
			t.held = map[int64]*protocol.Artifact{}
		}
		t.replaying, t.sent = true, map[int64]bool{}
		if ev.Replaced {
			// Another session under this id: everything printed is the
			// old one's, at whatever seqs the new one reuses.
			t.replaced, t.held = true, map[int64]*protocol.Artifact{}
		}
	case protocol.SSEArtifactSnapshot:
		if t.replaying {
			t.held[a.Seq], t.sent[a.Seq] = a, true
			return
		}
		t.render(a, false)
	case protocol.SSESnapshotComplete:
		if ev.Full {
			// A full replay is the whole session: what a cut replay
			// held and this one did not send is no longer in it.
			for seq := range t.held {
				if !t.sent[seq] {
					delete(t.held, seq)
				}
			}
		}
		if ev.Full && (t.replaced || t.wentBack()) {
			t.replaced = false
			// What was printed above is no longer the session's: say so,
			// and print the session as it now is, from its start.
			t.line(t.p.paint(styleYellow, "── the server's history of this session went back (restored from an older backup, or the session was deleted and created again); the transcript again, as the server now has it:"))
			t.shown, t.cur = map[int64]*shownArtifact{}, slot{}
		}
		t.flushReplay()
	default:
		if a != nil {
			t.render(a, false)
		}
	}
}

// wentBack reports whether a full replay, now held, lacks an artifact
// already printed: the session's history went back below it.
func (t *transcript) wentBack() bool {
	for seq := range t.shown {
		if t.held[seq] == nil {
			return true
		}
	}
	return false
}

// Close ends an unfinished line.
func (t *transcript) Close() {
	if t.midLine {
		t.write("\n")
		t.midLine = false
	}
}

// flushReplay renders the held snapshots in seq order. A turn's closing
// line is held back until the next turn starts (or the replay ends), so a
// finished turn still closes below its contents.
//
// A permission is created after the tool call it gates but happened before
// that tool's output: live, the output streams in after the answer. So a
// tool call's header is printed, then its permissions, then its output and
// status, as a live watcher saw them.
func (t *transcript) flushReplay() {
	list := make([]*protocol.Artifact, 0, len(t.held))
	for _, a := range t.held {
		list = append(list, a)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Seq < list[j].Seq })
	// A permission gates the tool call its toolCallId names as the
	// reducer found it: the newest one with that id created before it
	// in its turn. Ids repeat (a restarted agent counts its tool call
	// ids from 1 again, a prompt run again after an agentd crash repeats
	// its turn's ids), and grouping by id alone printed a later turn's
	// permission under an earlier turn's tool call of the same id.
	gates := map[int64][]*protocol.Artifact{} // tool call seq -> its permissions
	lastTool := map[string]int64{}            // tool call id -> seq, in the turn so far
	for _, a := range list {
		switch a.Type {
		case protocol.ArtifactTurn:
			clear(lastTool)
		case protocol.ArtifactToolCall:
			lastTool[a.ID] = a.Seq
		case protocol.ArtifactPermission:
			if seq := lastTool[a.String("toolCallId")]; seq != 0 {
				gates[seq] = append(gates[seq], a)
			}
		}
	}
	early := map[int64]bool{} // permissions printed with their tool call
	var turns []*protocol.Artifact
	for _, a := range list {
		if early[a.Seq] {
			continue
		}
		if a.Type == protocol.ArtifactToolCall {
			if perms := gates[a.Seq]; len(perms) > 0 {
				if protocol.ToolStatus(a.String("status")) == protocol.ToolAwaitingApproval {
					t.render(a, false) // still waiting: nothing of it follows the permission
				} else {
					t.renderToolHead(a, t.shownFor(a))
				}
				for _, p := range perms {
					t.render(p, false)
					early[p.Seq] = true
				}
			}
		}
		if a.Type == protocol.ArtifactTurn {
			for _, tu := range turns {
				t.render(tu, false)
			}
			turns = turns[:0]
			t.render(a, true)
			turns = append(turns, a)
			continue
		}
		t.render(a, false)
	}
	for _, tu := range turns {
		t.render(tu, false)
	}
	t.replaying, t.held, t.sent = false, nil, nil
}

func (t *transcript) write(s string) { io.WriteString(t.w, s) }

// line prints a whole line, first ending any unfinished streamed line.
func (t *transcript) line(s string) {
	if t.midLine {
		t.write("\n")
		t.midLine = false
	}
	t.write(s + "\n")
	t.cur = slot{}
}

// stream prints streamed text for sl, putting prefix at the start of each
// of its lines. Text of another stream that was cut mid-line continues on
// a new line.
func (t *transcript) stream(sl slot, prefix, style, s string) {
	if t.midLine && t.cur != sl {
		t.write("\n")
		t.midLine = false
	}
	t.cur = sl
	for s != "" {
		chunk := s
		nl := false
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			chunk, s, nl = s[:i], s[i+1:], true
		} else {
			s = ""
		}
		if !t.midLine {
			if chunk == "" {
				t.write(t.p.paint(styleDim, strings.TrimRight(prefix, " ")))
			} else {
				t.write(t.p.paint(styleDim, prefix))
			}
		}
		t.write(t.p.paint(style, chunk))
		if nl {
			t.write("\n")
		}
		t.midLine = !nl
	}
}

// endStream finishes sl's line if it is the unfinished one.
func (t *transcript) endStream(sl slot) {
	if t.midLine && t.cur == sl {
		t.write("\n")
		t.midLine = false
	}
}

// streamField prints what field of a has that was not printed yet. Text
// that was replaced (an *_end whose final text differs from what streamed)
// is printed again in full, marked as revised.
//
// When something else was printed since this field's last text, resume
// first marks the continuation, so it does not read as a new block.
func (t *transcript) streamField(a *protocol.Artifact, s *shownArtifact, field, prefix, style string, resume func(next string)) {
	now := a.String(field)
	before := s.text[field]
	sl := slot{a.Seq, field}
	if strings.HasPrefix(now, before) {
		if now != before {
			if before != "" && t.cur != sl && resume != nil {
				resume(now[len(before):])
			}
			// The field is not cleaned by cleanArtifact: its new part
			// is, here (before and now are whole runes, so it is too).
			t.stream(sl, prefix, style, cleanText(now[len(before):]))
		}
	} else {
		t.line(t.p.paint(styleDim, prefix+"[revised]"))
		t.stream(sl, prefix, style, cleanText(now))
	}
	s.text[field] = now
}

// changed reports whether field's value differs from what was last
// printed for it, and records it as printed.
func (s *shownArtifact) changed(a *protocol.Artifact, field string) bool {
	b, _ := json.Marshal(a.Fields[field])
	v := string(b)
	if old, ok := s.set[field]; ok && old == v {
		return false
	}
	if _, ok := s.set[field]; !ok && v == "null" {
		s.set[field] = v
		return false
	}
	s.set[field] = v
	return true
}

// shownFor is what has been printed for a, created empty on first use.
func (t *transcript) shownFor(a *protocol.Artifact) *shownArtifact {
	s := t.shown[a.Seq]
	if s == nil {
		s = &shownArtifact{text: map[string]string{}, set: map[string]string{}}
		t.shown[a.Seq] = s
	}
	return s
}

func (t *transcript) render(a *protocol.Artifact, holdTurnEnd bool) {
	s := t.shownFor(a)
	switch a.Type {
	case protocol.ArtifactTurn:
		t.renderTurn(a, s, holdTurnEnd)
	case protocol.ArtifactUserMessage:
		if !s.header {
			s.header = true
			t.line(t.p.paint(styleBold, "› "+indentRest(a.String("text"), "  ")))
		}
	case protocol.ArtifactAssistantText:
		s.header = true
		t.streamField(a, s, "text", "", "", func(next string) { t.inlineMarker(slot{a.Seq, "text"}, "…", next) })
		if st := protocol.BlockStatus(a.String("status")); st != protocol.BlockStreaming && st != "" {
			t.endStream(slot{a.Seq, "text"})
			if st == protocol.BlockInterrupted && s.changed(a, "status") {
				t.line(t.p.paint(styleYellow, "  (interrupted)"))
			}
		}
	case protocol.ArtifactReasoning:
		if !s.header {
			s.header = true
			if a.Fields["redacted"] == true {
				t.line(t.p.paint(styleDim, "~ (reasoning redacted)"))
			}
		}
		t.streamField(a, s, "text", "~ ", styleDim, func(next string) { t.inlineMarker(slot{a.Seq, "text"}, "~ …", next) })
		if st := protocol.BlockStatus(a.String("status")); st != protocol.BlockStreaming && st != "" {
			t.endStream(slot{a.Seq, "text"})
		}
	case protocol.ArtifactToolCall:
		t.renderTool(a, s)
	case protocol.ArtifactPermission:
		t.renderPermission(a, s)
	case protocol.ArtifactPlan:
		if s.changed(a, "entries") {
			t.renderPlan(a)
		}
	case protocol.ArtifactFileChange:
		if !s.header {
			s.header = true
			t.line(t.p.paint(styleCyan, "± "+a.String("change")+" "+a.String("path")))
			if d := a.String("diff"); d != "" {
				t.line(t.p.paint(styleDim, indentAll(strings.TrimRight(d, "\n"), "    ")))
			}
		}
	case protocol.ArtifactNotice:
		if !s.header {
			s.header = true
			level := a.String("level")
			st := map[string]string{"warning": styleYellow, "error": styleRed}[level]
			msg := "! " + level + ": " + a.String("message")
			if c := a.String("code"); c != "" {
				msg += " (" + c + ")"
			}
			t.line(t.p.paint(st, msg))
		}
	default:
		if !s.header {
			s.header = true
			t.line(t.p.paint(styleDim, fmt.Sprintf("[%s %s]", a.Type, a.ID)))
		}
	}
}

func (t *transcript) renderTurn(a *protocol.Artifact, s *shownArtifact, holdEnd bool) {
	if !s.header {
		s.header = true
		head := "── turn " + a.ID
		if src := a.String("source"); src != "" && src != "user" {
			head += " (" + src + ")"
		}
		t.line(t.p.paint(styleBlue, head+" ──"))
	}
	// A turn's end arrives as several updates (status, stopReason, error,
	// resultText, endedAt): the reducer sets endedAt last, so the closing
	// line waits for it and shows the others.
	st := a.String("status")
	if holdEnd || !client.TurnEnded(a) {
		return
	}
	if !s.changed(a, "status") {
		// The closing line is out. Usage that comes after it (Codex
		// reports a turn's tokens once it completed, and the reducer
		// puts them on that turn) gets a line of its own, naming the
		// turn, as another turn may have started meanwhile.
		if s.changed(a, "usage") {
			if u := usageText(a.Fields["usage"]); u != "" {
				t.line(t.p.paint(styleDim, "── turn "+a.ID+" usage: "+u+" ──"))
			}
		}
		return
	}
	s.changed(a, "usage") // on the closing line, below
	parts := []string{st}
	if r := a.String("stopReason"); r != "" && r != st {
		parts[0] += " (" + r + ")"
	}
	if e := a.String("error"); e != "" {
		parts = append(parts, e)
	}
	if u := usageText(a.Fields["usage"]); u != "" {
		parts = append(parts, u)
	}
	style := styleBlue
	if protocol.TurnStatus(st) == protocol.TurnFailed {
		style = styleRed
	}
	t.line(t.p.paint(style, "── "+strings.Join(parts, " · ")+" ──"))
}

// usageText formats a turn's usage: "100 in · 25 out · $0.0012".
func usageText(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return ""
	}
	var parts []string
	num := func(k, label string) {
		if f, ok := m[k].(float64); ok {
			parts = append(parts, strconv.FormatFloat(f, 'f', -1, 64)+" "+label)
		}
	}
	num("inputTokens", "in")
	num("cachedInputTokens", "cached")
	num("outputTokens", "out")
	if f, ok := m["costUsd"].(float64); ok {
		parts = append(parts, "$"+strconv.FormatFloat(f, 'f', -1, 64))
	}
	if used, ok := m["contextUsed"].(float64); ok {
		c := "context " + strconv.FormatFloat(used, 'f', -1, 64)
		if size, ok := m["contextSize"].(float64); ok && size > 0 {
			c += "/" + strconv.FormatFloat(size, 'f', -1, 64)
		}
		parts = append(parts, c)
	}
	return strings.Join(parts, " · ")
}

// renderToolHead prints a tool call's first line, once.
func (t *transcript) renderToolHead(a *protocol.Artifact, s *shownArtifact) {
	if s.header {
		return
	}
	s.header = true
	if a.String("title") != "" || compactJSON(a.Fields["input"]) != "" {
		s.set["input"] = "shown"
	}
	t.line(t.p.paint(styleBold, "▶ "+toolHead(a)))
}

func (t *transcript) renderTool(a *protocol.Artifact, s *shownArtifact) {
	if !s.header {
		t.renderToolHead(a, s)
	} else if _, ok := s.set["input"]; !ok {
		if in := compactJSON(a.Fields["input"]); in != "" {
			s.set["input"] = "shown"
			t.line(t.p.paint(styleDim, "  input: "+in))
		}
	}
	t.streamField(a, s, "output", "  │ ", "", func(string) { t.line(t.p.paint(styleDim, "▷ "+toolHead(a)+" (continued)")) })
	st := protocol.ToolStatus(a.String("status"))
	if !s.changed(a, "status") {
		return
	}
	var msg, style string
	switch st {
	case protocol.ToolAwaitingApproval:
		msg, style = "? awaiting approval", styleYellow
	case protocol.ToolCompleted:
		msg, style = "✓ completed", styleGreen
	case protocol.ToolFailed:
		msg, style = "✗ failed", styleRed
	case protocol.ToolCancelled:
		msg, style = "⊘ cancelled", styleYellow
	case protocol.ToolDenied:
		msg, style = "✗ denied", styleRed
	default: // pending, running: the header says it started
		return
	}
	if code, ok := a.Fields["exitCode"].(float64); ok {
		msg += fmt.Sprintf(" (exit %d)", int64(code))
	}
	if e := a.String("error"); e != "" {
		msg += ": " + e
	}
	t.line(t.p.paint(style, "  "+msg))
}

// toolHead names a tool call: "shell: ls -la", or its name and input.
func toolHead(a *protocol.Artifact) string {
	head := a.String("name")
	if head == "" {
		head = "tool"
	}
	if title := a.String("title"); title != "" {
		return head + ": " + title
	}
	if in := compactJSON(a.Fields["input"]); in != "" {
		return head + " " + in
	}
	return head
}

// inlineMarker starts a new line for sl with marker, which its next text
// then continues.
func (t *transcript) inlineMarker(sl slot, marker, next string) {
	if t.midLine {
		t.write("\n")
	}
	if !strings.HasPrefix(next, " ") {
		marker += " "
	}
	t.write(t.p.paint(styleDim, marker))
	t.cur, t.midLine = sl, true
}

type permissionOption struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Kind string `json:"kind"`
}

// permissionOptions decodes a permission artifact's options.
func permissionOptions(a *protocol.Artifact) []permissionOption {
	b, _ := json.Marshal(a.Fields["options"])
	var out []permissionOption
	_ = json.Unmarshal(b, &out)
	return out
}

func (t *transcript) renderPermission(a *protocol.Artifact, s *shownArtifact) {
	st := protocol.PermissionStatus(a.String("status"))
	if !s.header {
		s.header = true
		t.line(t.p.paint(styleYellow+";"+styleBold, "? permission "+a.ID+": "+a.String("title")))
		var opts []string
		for _, o := range permissionOptions(a) {
			opts = append(opts, fmt.Sprintf("%s (%s)", o.ID, o.Kind))
		}
		if len(opts) > 0 {
			t.line("  options: " + strings.Join(opts, ", "))
		}
		if st == protocol.PermissionPending || st == "" {
			t.line("  answer:  " + t.p.paint(styleBold, "rein approve "+shellQuote(t.session)+" "+shellQuote(a.ID)) +
				"  or  " + t.p.paint(styleBold, "rein deny "+shellQuote(t.session)+" "+shellQuote(a.ID)))
		}
	}
	if !s.changed(a, "status") {
		return
	}
	switch st {
	case protocol.PermissionApproved:
		t.line(t.p.paint(styleGreen, "  ✓ approved ("+a.String("optionId")+")"))
	case protocol.PermissionDenied:
		msg := "  ✗ denied"
		if o := a.String("optionId"); o != "" {
			msg += " (" + o + ")"
		}
		t.line(t.p.paint(styleRed, msg))
	case protocol.PermissionCancelled:
		t.line(t.p.paint(styleYellow, "  ⊘ cancelled"))
	}
}

func (t *transcript) renderPlan(a *protocol.Artifact) {
	b, _ := json.Marshal(a.Fields["entries"])
	var entries []struct {
		Content string              `json:"content"`
		Status  protocol.PlanStatus `json:"status"`
	}
	_ = json.Unmarshal(b, &entries)
	t.line(t.p.paint(styleBold, "plan:"))
	for _, e := range entries {
		box, style := "[ ]", ""
		switch e.Status {
		case protocol.PlanInProgress:
			box, style = "[>]", styleYellow
		case protocol.PlanCompleted:
			box, style = "[x]", styleGreen
		}
		t.line("  " + t.p.paint(style, box) + " " + e.Content)
	}
}

func compactJSON(v any) string {
	if v == nil {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil || string(b) == "{}" {
		return ""
	}
	return truncate(string(b), 120)
}

// truncate cuts s to n runes plus "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

func indentRest(s, prefix string) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix)
}

func indentAll(s, prefix string) string { return prefix + indentRest(s, prefix) }

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/=@+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// sessionTable renders sessions as a table: ID, STATUS, PROJECT, AGE,
// SUMMARY (last, as it is the long one).
func sessionTable(w io.Writer, list []protocol.Session, now time.Time, color bool) {
	p := painter(color)
	if len(list) == 0 {
		fmt.Fprintln(w, "no sessions")
		return
	}
	rows := [][]string{{"ID", "STATUS", "PROJECT", "AGE", "SUMMARY"}}
	for _, s := range list {
		rows = append(rows, []string{cleanLine(s.ID), cleanLine(string(s.Status)), cleanLine(orDash(s.Project)), age(now, s.CreatedAt), truncate(cleanLine(orDash(s.Summary)), 60)})
	}
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	statusStyle := map[string]string{
		string(protocol.StatusLive): styleGreen, string(protocol.StatusIdle): styleCyan,
		string(protocol.StatusBootstrapping): styleYellow, string(protocol.StatusDisconnected): styleRed,
	}
	for n, r := range rows {
		var b strings.Builder
		for i, c := range r {
			cell := c
			if i < len(r)-1 {
				cell += strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2)
			}
			switch {
			case n == 0:
				cell = p.paint(styleBold, cell)
			case i == 1:
				cell = p.paint(statusStyle[c], cell)
			}
			b.WriteString(cell)
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

func orDash(s *string) string {
	if s == nil || *s == "" {
		return "-"
	}
	return *s
}

// age formats the time since createdAt (ms) as 12s, 5m, 3h or 2d.
func age(now time.Time, createdAt int64) string {
	d := now.Sub(time.UnixMilli(createdAt))
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}
