package main

import (
	"fmt"
	"strings"

	"github.com/rein-ai/rein/protocol"
)

// Text that the agent, its tools or the server chose (a transcript, a
// summary, a permission's title and options, an error message) is printed
// on the user's terminal. Control characters in it are commands to the
// terminal: ESC and CSI sequences move the cursor, rewrite or hide lines
// already printed (a fake "✓ approved", an approve hint pointing
// elsewhere), OSC sequences set the window title or the clipboard (OSC
// 52), and some terminals answer queries by typing into the shell. So
// they are never printed raw: cleanText and cleanLine show them escaped
// (\x1b, \u009b), which is also what `rein watch --json` has in full.

// cleanText is s with every control character escaped but newline and
// tab, and carriage returns dropped (CRLF line ends, progress bars): for
// multi-line text. The mapping is per rune, so the clean text of a prefix
// is a prefix of the clean text: the transcript's diffs still hold.
func cleanText(s string) string { return clean(s, true) }

// cleanLine is s with every control character escaped, newline and tab
// too: for a table cell or a one-line field.
func cleanLine(s string) string { return clean(s, false) }

func clean(s string, multiline bool) string {
	if !needsClean(s, multiline) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for _, r := range s {
		switch {
		case multiline && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case multiline && r == '\r':
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r >= 0x80 && r < 0xa0:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// needsClean reports whether s holds a control character that clean
// changes: a byte scan, so text without any (nearly all of it) is neither
// copied nor decoded.
func needsClean(s string, multiline bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case multiline && (c == '\n' || c == '\t'):
		case c < 0x20 || c == 0x7f:
			return true
		case c == 0xc2 && i+1 < len(s) && s[i+1] >= 0x80 && s[i+1] < 0xa0:
			// U+0080..U+009F (C1 controls: 0x9b is CSI) in UTF-8.
			return true
		}
	}
	return false
}

// streamedField is the field of an artifact of type typ that grows by
// deltas ("" for none): streamField cleans only what it prints of it, the
// new part, rather than cleanArtifact copying the whole of a long
// output (with a colour escape in it) on every delta.
func streamedField(typ protocol.ArtifactType) string {
	switch typ {
	case protocol.ArtifactAssistantText, protocol.ArtifactReasoning:
		return "text"
	case protocol.ArtifactToolCall:
		return "output"
	}
	return ""
}

// cleanArtifact returns a with every string in it, however deep (plan
// entries, permission options, tool input), cleaned by cleanText, but
// its streamed field (streamedField); a itself when it holds nothing to
// clean.
func cleanArtifact(a *protocol.Artifact) *protocol.Artifact {
	if a == nil {
		return nil
	}
	skip := streamedField(a.Type)
	dirty := needsClean(a.ID, true) || needsClean(a.TurnID, true)
	for k, v := range a.Fields {
		if k == skip {
			continue
		}
		if dirty = dirty || dirtyValue(v); dirty {
			break
		}
	}
	if !dirty {
		return a
	}
	c := *a
	c.ID, c.TurnID = cleanText(a.ID), cleanText(a.TurnID)
	c.Fields = make(map[string]any, len(a.Fields))
	for k, v := range a.Fields {
		if k == skip {
			c.Fields[k] = v
			continue
		}
		c.Fields[k] = cleanValue(v)
	}
	return &c
}

func dirtyValue(v any) bool {
	switch v := v.(type) {
	case string:
		return needsClean(v, true)
	case []any:
		for _, x := range v {
			if dirtyValue(x) {
				return true
			}
		}
	case map[string]any:
		for k, x := range v {
			if needsClean(k, true) || dirtyValue(x) {
				return true
			}
		}
	}
	return false
}

func cleanValue(v any) any {
	switch v := v.(type) {
	case string:
		return cleanText(v)
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = cleanValue(x)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[cleanText(k)] = cleanValue(x)
		}
		return out
	}
	return v
}
