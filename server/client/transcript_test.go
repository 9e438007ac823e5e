package client_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/client"
)

// TestTranscriptAppendCostsTheAppend: a tool's output streams live into a
// followed session, one append at a time. The Transcript made each append
// a new string of the whole field so far, so that folding N appends cost
// N²/2 of them: a tool printing 20 MiB in 4 KiB pieces took rein watch 19
// s of CPU to fold, and the cost grows with the square of the output. An
// append must cost about its own length: here 1,000 appends of 8 KiB
// (8 MiB of output) must not allocate gigabytes (they allocated 4.4 GiB,
// the server's work included).
func TestTranscriptAppendCostsTheAppend(t *testing.T) {
	s, tok := sessionS(t)
	postAs(t, s.URL(), tok, `{"type":"tool_call_start","id":"build","name":"shell","title":"make"}`)

	const n, size = 1000, 8 << 10
	chunk := strings.Repeat("o", size-1) + "\n"
	model := client.NewTranscript()
	ready := make(chan struct{})
	var before, after runtime.MemStats
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		ready := ready
		done <- clientOf(t, s.URL()).StreamArtifacts(ctx, "s", client.StreamOptions{}, func(ev client.ArtifactEvent) error {
			a, err := model.Apply(ev)
			if err != nil {
				return err
			}
			if ev.Name == protocol.SSESnapshotComplete && ready != nil {
				close(ready)
				ready = nil
			}
			if a != nil && len(a.String("output")) == n*size {
				runtime.ReadMemStats(&after)
				return client.ErrStop
			}
			return nil
		})
	}()
	<-ready
	runtime.ReadMemStats(&before)
	for range n {
		postAs(t, s.URL(), tok, fmt.Sprintf(`{"type":"tool_output_delta","id":"build","delta":%q}`, chunk))
	}
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if after.TotalAlloc == 0 {
		t.Fatalf("the stream ended before the output was in: %d bytes of it", len(model.Get(1).String("output")))
	}
	// The server runs in this process: its own work on the posts was
	// about 430 MiB here. Appends that copy the field add n*n*size/2,
	// 4 GiB, to that; appends that cost their length, 8 MiB and change.
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<30 {
		t.Errorf("folding %d appends of %d bytes allocated %d MiB; want it about linear in the output (%d MiB)", n, size, got>>20, n*size>>20)
	}
}
