package main

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/server/app"
)

// TestWatchJSONHoldsNotTheTranscript: rein watch --json prints each
// event as it comes, and with --until-idle needs only to know which turns
// run. It held the whole transcript all the same, as the terminal view
// does: following a long session (a CI job logging one, a build whose
// tool printed gigabytes, up to the session's 1 GiB) it took as much
// memory as the session. Here a tool prints 4 MiB while watch follows;
// once the tool has ended (the server no longer holds its output in
// memory either), what the process holds must not have grown by the
// output.
func TestWatchJSONHoldsNotTheTranscript(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	postEvents(t, s, "s1", tok, `[
		{"type":"turn_started","turnId":"t1","source":"user"},
		{"type":"tool_call_start","id":"build","name":"shell","title":"make"}]`)

	w := newSentinelWriter()
	w.expect(`"snapshot_complete"`)
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	done := make(chan int, 1)
	var errOut syncBuffer
	go func() {
		e := &env{stdout: w, stderr: &errOut, now: time.Now}
		code := run(ctx, []string{"rein", "--server", s.URL(), "--token", testToken, "watch", "s1", "--json", "--until-idle", "--idle-grace", "0"}, e)
		w.end()
		done <- code
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("rein's stderr: %s", errOut.String())
		}
	})
	w.wait(t)
	before := heapInUse()

	const output = 4 << 20
	const chunk = 255 << 10
	delta := fmt.Sprintf(`[{"type":"tool_output_delta","id":"build","delta":%q}]`, strings.Repeat("o", chunk-1)+"\n")
	for sent := 0; sent < output; sent += chunk {
		postEvents(t, s, "s1", tok, delta)
	}
	w.expect(`"status","set":"completed"`)
	postEvents(t, s, "s1", tok, `[{"type":"tool_call_end","id":"build","status":"completed"}]`)
	w.wait(t)
	grown := int64(heapInUse()) - int64(before)

	postEvents(t, s, "s1", tok, `[{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}]`)
	if code := <-done; code != 0 {
		t.Fatalf("watch: exit %d, stderr %q", code, errOut.String())
	}
	// The server's own work leaves some: a few MiB here.
	if grown > output/2 {
		t.Errorf("while rein watch --json followed a tool printing %d MiB, the heap grew by %d MiB: it holds the output", output>>20, grown>>20)
	}
	t.Logf("heap grew by %d KiB", grown>>10)
}

// heapInUse is the heap's live bytes after a collection. Two: the
// first leaves what sync.Pools held (encoding/json's encode buffers, as
// large as the largest value encoded) in their victim caches.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
