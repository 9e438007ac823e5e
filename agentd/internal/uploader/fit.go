package uploader

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/rein-ai/rein/protocol"
)

// Fitting events to the protocol's size limits.
//
// The server refuses an event whose encoding is above
// protocol.MaxEventBytes, or one of whose text fields decodes to more than
// protocol.MaxTextLen bytes, and a refused event is dropped (postBatch):
// retrying it would stall everything behind it. A dropped tool_call_end
// leaves the transcript saying the tool failed when the turn ends; a
// dropped permission_requested leaves the agent waiting on a question
// nobody sees. Staying under MaxTextLen in raw bytes is not enough: JSON
// writes a control character, '<', '>', '&' and each invalid UTF-8 byte as
// a six-byte escape (a binary file's contents, a colourful build log), and
// the decoder turns an invalid byte into U+FFFD, three bytes. Nor are the
// JSON fields (a Write tool's input holds the whole file) under any text
// limit of their own.
//
// So every event is fitted before it is queued: its texts are made valid
// UTF-8 and cut to MaxTextLen, and while it still encodes above the limit
// the largest text, or the largest string inside its largest JSON field,
// is cut by the excess. A cut text ends with cutMarker, so the transcript
// says it was cut, and by how much, instead of losing the event.
//
// One exception: a final text that replaces what streamed (text_end's and
// reasoning_end's text, tool_call_end's output) is left out rather than
// cut when deltas streamed it, since the reducer keeps the streamed text
// when the final one is empty, and that text is whole.

// fitLimit leaves room for the agentSeq stamped after fitting.
const fitLimit = protocol.MaxEventBytes - 64

// fastBound is the raw size under which an event cannot break a limit:
// even at six bytes per byte it encodes within MaxEventBytes, and at three
// (U+FFFD for an invalid byte) each text decodes within MaxTextLen.
const fastBound = protocol.MaxEventBytes / 8

// cutMarker ends a text agentd cut; n is the text's length before.
func cutMarker(n int) string {
	return fmt.Sprintf("\n[cut by agentd: %d bytes in all]", n)
}

// text is one string field of an event, by name for the log.
type text struct {
	name string
	p    *string
}

// raw is one JSON field of an event.
type raw struct {
	name string
	p    *json.RawMessage
}

// fit returns ev within the protocol's limits and the fields it cut (nil
// when it changed nothing a reader would see); streamed says deltas
// streamed the event's block or tool call (streams). Small events, nearly
// all of them, return at once, unchanged and not encoded.
func fit(ev protocol.Event, streamed bool) (protocol.Event, []string) {
	if rawSize(&ev) <= fastBound && len(ev.Entries) <= protocol.MaxPlanEntries {
		return ev, nil
	}
	return fitLarge(ev, streamed)
}

// fitLarge is fit for an event that may break a limit. It is a function
// of its own so that the pointers it takes into ev do not make every
// event escape to the heap.
func fitLarge(ev protocol.Event, streamed bool) (protocol.Event, []string) {
	// The slices and the agent info are shared with the caller: copy them
	// before changing any of their strings.
	ev.Entries = append([]protocol.PlanEntry(nil), ev.Entries...)
	ev.Options = append([]protocol.PermissionOption(nil), ev.Options...)
	if ev.Agent != nil {
		a := *ev.Agent
		ev.Agent = &a
	}
	var cuts []string
	if n := len(ev.Entries); n > protocol.MaxPlanEntries {
		ev.Entries = append(ev.Entries[:protocol.MaxPlanEntries-1], protocol.PlanEntry{
			Content: fmt.Sprintf("[cut by agentd: %d more entries]", n-protocol.MaxPlanEntries+1),
			Status:  protocol.PlanPending,
		})
		cuts = append(cuts, fmt.Sprintf("entries (%d)", n))
	}
	texts := textsOf(&ev)
	for _, t := range texts {
		if !utf8.ValidString(*t.p) {
			// What the server will read, so lengths below are the
			// lengths it checks.
			*t.p = validUTF8(*t.p)
		}
	}
	if name, final := finalText(&ev); streamed && final != nil {
		n := len(*final)
		over := n > protocol.MaxTextLen
		if !over {
			b, err := ev.MarshalJSON()
			over = err == nil && len(b) > fitLimit
		}
		if over {
			*final = ""
			cuts = append(cuts, fmt.Sprintf("%s (%d bytes; left out, what streamed stands)", name, n))
		}
	}
	for _, t := range texts {
		if n := len(*t.p); n > protocol.MaxTextLen {
			*t.p = cutText(*t.p, protocol.MaxTextLen, func(s string) int { return len(s) })
			cuts = append(cuts, fmt.Sprintf("%s (%d bytes)", t.name, n))
		}
	}
	raws := rawsOf(&ev)
	// Each round cuts the largest part by the whole excess, so one or two
	// rounds do; the bound only guards against a part that cannot shrink.
	for range 16 {
		b, err := ev.MarshalJSON()
		if err != nil || len(b) <= fitLimit {
			break
		}
		excess := len(b) - fitLimit
		bestText, bestRaw, best := -1, -1, 0
		for i, t := range texts {
			if n := escapedLen(*t.p); n > best {
				bestText, bestRaw, best = i, -1, n
			}
		}
		for i, r := range raws {
			if n := rawEncodedLen(*r.p); n > best {
				bestText, bestRaw, best = -1, i, n
			}
		}
		switch {
		case bestText >= 0:
			t := texts[bestText]
			n := len(*t.p)
			*t.p = cutText(*t.p, best-excess, escapedLen)
			cuts = append(cuts, fmt.Sprintf("%s (%d bytes)", t.name, n))
		case bestRaw >= 0:
			r := raws[bestRaw]
			*r.p = cutRaw(*r.p, excess)
			cuts = append(cuts, fmt.Sprintf("%s (%d bytes)", r.name, best))
		default:
			return ev, cuts
		}
	}
	return ev, cuts
}

// finalText is the event's text that replaces what deltas streamed, if
// it has one.
func finalText(ev *protocol.Event) (string, *string) {
	switch ev.Type {
	case protocol.EventTextEnd, protocol.EventReasoningEnd:
		return "text", &ev.Text
	case protocol.EventToolCallEnd:
		return "output", &ev.Output
	}
	return "", nil
}

// streams remembers the blocks and tool calls whose text or output
// streamed in deltas, until their end event (or their turn's end, which
// ends them all). The zero value is ready to use.
type streams struct {
	mu  sync.Mutex
	ids map[streamKey]bool
}

// streamKey names a stream: its id under its kind (an id may be left out
// of text and reasoning events; "" then names the open block).
type streamKey struct {
	kind protocol.EventType // the delta's type
	id   string
}

// keyOf is ev's stream, and whether ev is one of its deltas or its end.
func keyOf(ev protocol.Event) (key streamKey, delta, end bool) {
	switch ev.Type {
	case protocol.EventTextDelta, protocol.EventReasoningDelta, protocol.EventToolOutputDelta:
		return streamKey{ev.Type, ev.ID}, true, false
	case protocol.EventTextEnd:
		return streamKey{protocol.EventTextDelta, ev.ID}, false, true
	case protocol.EventReasoningEnd:
		return streamKey{protocol.EventReasoningDelta, ev.ID}, false, true
	case protocol.EventToolCallEnd:
		return streamKey{protocol.EventToolOutputDelta, ev.ID}, false, true
	}
	return streamKey{}, false, false
}

// ended notes ev and reports whether it ends a stream that deltas
// streamed.
func (s *streams) ended(ev protocol.Event) bool {
	key, delta, end := keyOf(ev)
	switch {
	case delta:
		s.mu.Lock()
		if !s.ids[key] {
			if s.ids == nil {
				s.ids = map[streamKey]bool{}
			}
			s.ids[key] = true
		}
		s.mu.Unlock()
	case end:
		s.mu.Lock()
		streamed := s.ids[key]
		delete(s.ids, key)
		s.mu.Unlock()
		return streamed
	case ev.Type == protocol.EventTurnCompleted || ev.Type == protocol.EventAgentExited:
		s.mu.Lock()
		clear(s.ids)
		s.mu.Unlock()
	}
	return false
}

// rawSize is the sum of the event's variable-length parts, unencoded. It
// runs for every event, so it adds them up rather than listing them.
func rawSize(ev *protocol.Event) int {
	n := len(ev.Model) + len(ev.Cwd) + len(ev.Signal) + len(ev.Error) + len(ev.ResultText) +
		len(ev.Text) + len(ev.Delta) + len(ev.Name) + len(ev.Kind) + len(ev.Title) + len(ev.Stream) +
		len(ev.Output) + len(ev.Path) + len(ev.Diff) + len(ev.Summary) + len(ev.Message) +
		len(ev.Capabilities) + len(ev.Input) + len(ev.Locations) + len(ev.Content) + len(ev.Result)
	for _, e := range ev.Entries {
		n += len(e.Content) + len(e.Priority)
	}
	for _, o := range ev.Options {
		n += len(o.Name) + len(o.ID)
	}
	if ev.Agent != nil {
		n += len(ev.Agent.Name) + len(ev.Agent.Version) + len(ev.Agent.Protocol)
	}
	return n
}

func textsOf(ev *protocol.Event) []text {
	ts := []text{
		{"model", &ev.Model}, {"cwd", &ev.Cwd}, {"signal", &ev.Signal}, {"error", &ev.Error},
		{"resultText", &ev.ResultText}, {"text", &ev.Text}, {"delta", &ev.Delta},
		{"name", &ev.Name}, {"kind", &ev.Kind}, {"title", &ev.Title}, {"stream", &ev.Stream},
		{"output", &ev.Output}, {"path", &ev.Path}, {"diff", &ev.Diff},
		{"summary", &ev.Summary}, {"message", &ev.Message},
	}
	for i := range ev.Entries {
		ts = append(ts, text{fmt.Sprintf("entries[%d].content", i), &ev.Entries[i].Content})
	}
	for i := range ev.Options {
		ts = append(ts, text{fmt.Sprintf("options[%d].name", i), &ev.Options[i].Name})
	}
	if ev.Agent != nil {
		ts = append(ts, text{"agent.name", &ev.Agent.Name}, text{"agent.version", &ev.Agent.Version})
	}
	return ts
}

func rawsOf(ev *protocol.Event) []raw {
	return []raw{
		{"capabilities", &ev.Capabilities}, {"input", &ev.Input}, {"locations", &ev.Locations},
		{"content", &ev.Content}, {"result", &ev.Result},
	}
}

// cutText cuts valid UTF-8 s to its longest prefix, on a rune boundary,
// whose size by size, with the marker added, is at most limit.
func cutText(s string, limit int, size func(string) int) string {
	marker := cutMarker(len(s))
	budget := limit - size(marker)
	end, used := 0, 0
	for end < len(s) {
		_, w := utf8.DecodeRuneInString(s[end:])
		c := size(s[end : end+w])
		if used+c > budget {
			break
		}
		used += c
		end += w
	}
	return s[:end] + marker
}

// validUTF8 replaces each invalid byte of s with U+FFFD, as encoding/json
// does when it writes s (strings.ToValidUTF8 would replace a whole run
// with one, so the server would read something else).
func validUTF8(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && w == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+w])
		}
		i += w
	}
	return b.String()
}

// escapedLen is the length of valid UTF-8 s as encoding/json writes it
// inside a string, HTML escaping included (without the quotes).
func escapedLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f':
				n += 2
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' || (r == utf8.RuneError && w == 1) {
			n += 6
		} else {
			n += w
		}
		i += w
	}
	return n
}

// rawEncodedLen is the length a JSON field takes in the encoded event.
func rawEncodedLen(r json.RawMessage) int {
	if len(r) == 0 {
		return 0
	}
	b, err := json.Marshal(r)
	if err != nil {
		return len(r)
	}
	return len(b)
}

// cutRaw makes the JSON value v at least excess bytes shorter when
// encoded: it cuts the longest string inside it when that string can give
// that much, and otherwise replaces the whole value with a string saying
// what was there.
func cutRaw(v json.RawMessage, excess int) json.RawMessage {
	whole := func() json.RawMessage {
		b, _ := json.Marshal(fmt.Sprintf("[cut by agentd: %d bytes of JSON]", len(v)))
		return b
	}
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	var x any
	if err := d.Decode(&x); err != nil {
		return whole()
	}
	longest := longestString(x)
	if longest < 0 {
		return whole()
	}
	cut := false
	x = replaceString(x, longest, func(s string) string {
		s = validUTF8(s)
		n := escapedLen(s)
		if n-excess < 256 {
			return s
		}
		cut = true
		return cutText(s, n-excess, escapedLen)
	}, new(bool))
	if !cut {
		return whole()
	}
	b, err := json.Marshal(x)
	if err != nil {
		return whole()
	}
	return b
}

// longestString is the length of the longest string value inside x
// (objects and arrays, any depth), or -1 when there is none.
func longestString(x any) int {
	switch v := x.(type) {
	case string:
		return len(v)
	case map[string]any:
		best := -1
		for _, e := range v {
			best = max(best, longestString(e))
		}
		return best
	case []any:
		best := -1
		for _, e := range v {
			best = max(best, longestString(e))
		}
		return best
	}
	return -1
}

// replaceString replaces the first string of length n found inside x
// with f of it; done says it has been.
func replaceString(x any, n int, f func(string) string, done *bool) any {
	if *done {
		return x
	}
	switch v := x.(type) {
	case string:
		if len(v) == n {
			*done = true
			return f(v)
		}
	case map[string]any:
		for k, e := range v {
			v[k] = replaceString(e, n, f, done)
		}
	case []any:
		for i, e := range v {
			v[i] = replaceString(e, n, f, done)
		}
	}
	return x
}
