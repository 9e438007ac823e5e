package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
)

// BenchmarkStreamedOutput streams one tool call's output as 100-byte line
// deltas, one event per commit (the worst case for group commit), through
// the Go API into a server on a real SQLite file. One op is the whole
// stream. Persisting a growing artifact must cost O(total bytes): the 8 MB
// case should take about 8 times the 1 MB case, not 64 times.
// Run: go test -run '^$' -bench StreamedOutput -benchtime 1x
func BenchmarkStreamedOutput(b *testing.B) {
	for _, size := range []int{1 << 20, 8 << 20} {
		b.Run(fmt.Sprintf("%dMB", size>>20), func(b *testing.B) {
			line := strings.Repeat("x", 99) + "\n"
			deltas := size / len(line)
			ctx := context.Background()
			// No sandbox ever connects: keep the sessions from timing out.
			s := start(b, app.Options{BootstrapTimeout: time.Hour})
			b.SetBytes(int64(deltas * len(line)))
			b.ResetTimer()
			for i := range b.N {
				id := fmt.Sprintf("s%d", i)
				if _, err := s.CreateSession(ctx, id, ""); err != nil {
					b.Fatal(err)
				}
				send := func(e protocol.Event) {
					if _, err := s.AppendEvents(ctx, id, "", []protocol.Event{e}); err != nil {
						b.Fatal(err)
					}
				}
				send(protocol.Event{Type: protocol.EventToolCallStart, ID: "x", Name: "sh"})
				for range deltas {
					send(protocol.Event{Type: protocol.EventToolOutputDelta, ID: "x", Delta: line})
				}
				send(protocol.Event{Type: protocol.EventToolCallEnd, ID: "x", Status: protocol.ToolCompleted})
			}
		})
	}
}
