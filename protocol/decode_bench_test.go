package protocol

import (
	"fmt"
	"strings"
	"testing"
)

// deltaBatch is a batch of 500 text deltas, the shape agentd posts under
// load.
func deltaBatch() []byte {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := range 500 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"type":"text_delta","id":"m1","delta":"word%d ","agentSeq":%d,"ts":1732190000000}`, i, i+1)
	}
	sb.WriteByte(']')
	return []byte(sb.String())
}

// mixedBatch is a turn's worth of every kind of event agentd sends: a
// tool call with a JSON input and a plan among deltas, 100 events.
func mixedBatch() []byte {
	var sb strings.Builder
	sb.WriteString(`[{"type":"turn_started","turnId":"t1","source":"user","agentSeq":1}`)
	seq := 2
	for i := range 24 {
		fmt.Fprintf(&sb, `,{"type":"text_delta","id":"m%d","delta":"some words %d ","agentSeq":%d,"ts":1732190000000}`, i/8, i, seq)
		fmt.Fprintf(&sb, `,{"type":"tool_call_start","id":"c%d","name":"shell","kind":"execute","title":"ls -la","input":{"command":"ls -la","cwd":"/work"},"agentSeq":%d}`, i, seq+1)
		fmt.Fprintf(&sb, `,{"type":"tool_output_delta","id":"c%d","delta":"total 0\n","stream":"stdout","agentSeq":%d}`, i, seq+2)
		fmt.Fprintf(&sb, `,{"type":"tool_call_end","id":"c%d","status":"completed","exitCode":0,"agentSeq":%d}`, i, seq+3)
		seq += 4
	}
	fmt.Fprintf(&sb, `,{"type":"plan_updated","entries":[{"content":"a","status":"completed"},{"content":"b","status":"in_progress"}],"agentSeq":%d}`, seq)
	fmt.Fprintf(&sb, `,{"type":"turn_completed","turnId":"t1","stopReason":"end_turn","agentSeq":%d}]`, seq+1)
	return []byte(sb.String())
}

// BenchmarkDecodeEvents decodes a batch of 500 text deltas. One op is one
// batch.
func BenchmarkDecodeEvents(b *testing.B) {
	body := deltaBatch()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEvents(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEventsRaw is the server's call: the same batch, with the
// raw bytes of each event kept.
func BenchmarkDecodeEventsRaw(b *testing.B) {
	body := deltaBatch()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DecodeEventsRaw(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEventsMixed decodes a batch of 100 events of several
// types, a quarter of them with nested values.
func BenchmarkDecodeEventsMixed(b *testing.B) {
	body := mixedBatch()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEvents(body); err != nil {
			b.Fatal(err)
		}
	}
}
