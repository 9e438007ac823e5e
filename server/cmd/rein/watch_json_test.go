package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/internal/writetest"
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

// printStreamLine prints every line as printJSON does, big data included
// (whitespace outside strings compacted, HTML characters escaped, invalid
// JSON refused), and writes big data that needs none of that as it is:
// through json.Marshal and fmt, rein watch --json of a 64 MB tool output
// held three more copies of it and peaked at 603 MiB.
func TestPrintStreamLine(t *testing.T) {
	pad := strings.Repeat("y", 64<<10)
	for _, data := range []string{
		`{"a":1}`,
		`{"artifact":{"output":"` + pad + `"}}`,
		`{"artifact":{"output":"` + pad + ` spaces \" \\" , "k" : [1, 2]}}`,
		`{"artifact":{"output":"` + pad + `\\\" quote \\\\"},"b":[1,2]}`,
		`{"artifact":{"output":"` + pad + `"}, "b":2}`,
		`{"artifact":{"output":"` + pad + `\\"}, "b":"c"}`,
		"{\"artifact\":{\"output\":\"" + pad + "\"},\n\"b\":2}",
		`{"artifact":{"output":"` + pad + `<b>"}}`,
		`{"artifact":{"output":"` + pad + `&"}}`,
		"{\"artifact\":{\"output\":\"" + pad + "\u2028\"}}",
		`{"artifact":{"output":"` + pad + `"}`,   // not JSON
		`{"artifact":{"output":"` + pad + `"}}x`, // nor this
		`"` + pad + `"`,
		` "` + pad + `" `,
	} {
		for _, id := range []int64{0, 42} {
			line := streamLine{Event: "artifact_snapshot", ID: id, Data: json.RawMessage(data)}
			var got, want strings.Builder
			gotErr, wantErr := printStreamLine(&got, line), printJSON(&want, line)
			if (gotErr != nil) != (wantErr != nil) || got.String() != want.String() {
				t.Errorf("printStreamLine(%.30q...%q, id %d) = ...%q, %v; want ...%q, %v", data, data[max(0, len(data)-24):], id,
					got.String()[max(0, got.Len()-30):], gotErr, want.String()[max(0, want.Len()-30):], wantErr)
			}
		}
	}

	// What rein-server sends is written as it is, quotes and backslashes
	// escaped in its strings and all.
	for _, data := range []string{
		`{"artifact":{"output":"` + pad + `"}}`,
		`{"artifact":{"output":"` + pad + ` a \" b \\ c \\\" d","n":[1,{"k":" "}]},"x":null}`,
	} {
		if !printsAsIs([]byte(data)) {
			t.Errorf("printsAsIs(...%q) = false", data[len(pad):])
		}
	}

	data := []byte(`{"artifact":{"output":"` + strings.Repeat("x", 32<<20) + `"}}`)
	asIs, alloc, err := writetest.AsIs(data, func(w io.Writer) error {
		return printStreamLine(w, streamLine{Event: "artifact_snapshot", ID: 7, Data: data})
	})
	if err != nil {
		t.Fatal(err)
	}
	if !asIs {
		t.Errorf("%d MiB of data were not written as they are", len(data)>>20)
	}
	if alloc > 1<<20 {
		t.Errorf("printing %d MiB of data allocated %d KiB", len(data)>>20, alloc>>10)
	}
}
