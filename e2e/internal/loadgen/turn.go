package loadgen

import (
	"fmt"
	"strings"
)

// Turn is the shape of one agent turn as ReinEvents (protocol/README.md):
// turn_started, the user's message, streamed text, a shell tool call with
// streamed output, then the ends of both blocks and turn_completed.
type Turn struct {
	// TextDeltas is how many text_delta events stream the answer
	// ("word<k> " each).
	TextDeltas int
	// OutputDeltas is how many tool_output_delta events stream the tool's
	// output.
	OutputDeltas int
	// OutputLine is the bytes of each output delta: "file<k> " padded with
	// dots to this length, newline included. 0 is a bare "file<k>\n".
	OutputLine int
}

// Len is how many events Events returns.
func (t Turn) Len() int { return t.TextDeltas + t.OutputDeltas + 6 }

// Events returns turn number n (its ids t<n>, u<n>, m<n>, c<n> are unique
// per n within a session) as JSON objects.
func (t Turn) Events(n int) []string {
	ev := make([]string, 0, t.Len())
	ev = append(ev,
		fmt.Sprintf(`{"type":"turn_started","turnId":"t%d","source":"user"}`, n),
		fmt.Sprintf(`{"type":"user_message","id":"u%d","text":"prompt %d"}`, n, n))
	for k := range t.TextDeltas {
		ev = append(ev, fmt.Sprintf(`{"type":"text_delta","id":"m%d","delta":"word%d "}`, n, k))
	}
	ev = append(ev, fmt.Sprintf(`{"type":"tool_call_start","id":"c%d","name":"shell","input":{"command":"ls"}}`, n))
	for k := range t.OutputDeltas {
		line := fmt.Sprintf("file%d", k)
		if t.OutputLine > 0 {
			line += " " + strings.Repeat(".", max(0, t.OutputLine-len(line)-2))
		}
		// The newline is written as JSON's escape; the rest is plain ASCII.
		ev = append(ev, fmt.Sprintf(`{"type":"tool_output_delta","id":"c%d","delta":"%s\n"}`, n, line))
	}
	ev = append(ev,
		fmt.Sprintf(`{"type":"tool_call_end","id":"c%d","status":"completed","exitCode":0}`, n),
		fmt.Sprintf(`{"type":"text_end","id":"m%d"}`, n),
		fmt.Sprintf(`{"type":"turn_completed","turnId":"t%d","stopReason":"end_turn"}`, n))
	return ev
}

// Batch joins events into one JSON array, the body of a POST of several
// events.
func Batch(events []string) []byte {
	return []byte("[" + strings.Join(events, ",") + "]")
}
