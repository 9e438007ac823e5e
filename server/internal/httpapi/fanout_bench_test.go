package httpapi

import (
	"io"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/hub"
)

// BenchmarkFanout publishes one artifact change record to 1,000
// subscribers and has each take it and write its SSE frame, as a live stream does.
// "shared" is the server's way (Message.Wire: framed once, the bytes
// shared); "each" frames it per subscriber, what fan-out would cost if
// every stream encoded for itself.
// Run: go test -run '^$' -bench Fanout ./internal/httpapi
func BenchmarkFanout(b *testing.B) {
	data := []byte(`{"seq":3,"fields":{"text":"` + strings.Repeat("x", 200) + `"}}`)
	for _, tc := range []struct {
		name  string
		write func(*hub.Message) []byte
	}{
		{"shared", func(m *hub.Message) []byte { return m.Wire(frame) }},
		{"each", frame},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := hub.New(0, 0)
			subs := make([]*hub.Subscriber, 1000)
			for i := range subs {
				subs[i] = h.Subscribe("t", nil)
			}
			b.ReportAllocs()
			for b.Loop() {
				h.Publish("t", &hub.Message{Event: protocol.SSEArtifactUpdated, Data: data, Seq: 42})
				for _, s := range subs {
					for _, m := range s.Take() {
						_, _ = io.Discard.Write(tc.write(m))
					}
				}
			}
			b.ReportMetric(float64(b.N*len(subs))/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
