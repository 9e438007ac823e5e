package outbox

import (
	"context"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// BenchmarkAppendNextAck is the outbox's cost per event on the path from
// the agent to a POST body: Append, Next in batches of 200, Ack, with
// fsyncs as the uploader runs them (one per batch here).
func BenchmarkAppendNextAck(b *testing.B) { benchmarkAppendNextAck(b, true) }

// BenchmarkAppendNextAckNoSync is the CPU cost alone.
func BenchmarkAppendNextAckNoSync(b *testing.B) { benchmarkAppendNextAck(b, false) }

func benchmarkAppendNextAck(b *testing.B, sync bool) {
	l, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ev := protocol.Event{Type: protocol.EventTextDelta, ID: "m1", Delta: "word "}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := l.Append(ctx, ev); err != nil {
			b.Fatal(err)
		}
		if i%200 == 199 {
			if sync {
				if err := l.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			recs, err := l.Next(200, 1<<20)
			if err != nil || len(recs) == 0 {
				b.Fatal(err)
			}
			if err := l.Ack(recs[len(recs)-1]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
