package protocol

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkDecodeEvents decodes a batch of 500 text deltas, the shape
// agentd posts under load. One op is one batch.
func BenchmarkDecodeEvents(b *testing.B) {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := range 500 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"type":"text_delta","id":"m1","delta":"word%d ","agentSeq":%d,"ts":1732190000000}`, i, i+1)
	}
	sb.WriteByte(']')
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEvents(body); err != nil {
			b.Fatal(err)
		}
	}
}
