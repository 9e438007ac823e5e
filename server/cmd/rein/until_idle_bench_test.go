package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/server/app"
)

// BenchmarkWatchUntilIdle is rein watch --until-idle --json following a
// long session that streams quickly: the session holds n artifacts (a
// running turn and its tool calls), and two tool calls' outputs stream
// in alternating deltas, each one stream event. One op is one live
// event, end to end: posted to a real rein-server on SQLite, sent on the
// artifact stream, folded and judged by rein, printed. The idle judgement
// must not grow with the session: the figures for 1k, 10k and 30k
// artifacts should be about the same.
// Run: go test -run '^$' -bench WatchUntilIdle -benchtime 1000x -count 5
func BenchmarkWatchUntilIdle(b *testing.B) {
	for _, n := range []int{1000, 10000, 30000} {
		b.Run(fmt.Sprintf("artifacts=%d", n), func(b *testing.B) {
			s := startServer(b, app.Options{BootstrapTimeout: time.Hour})
			tok := createSession(b, s, "s1")
			var batch []string
			post := func(ev string) {
				if batch = append(batch, ev); len(batch) == 500 {
					postEvents(b, s, "s1", tok, "["+strings.Join(batch, ",")+"]")
					batch = batch[:0]
				}
			}
			flush := func() {
				if len(batch) > 0 {
					postEvents(b, s, "s1", tok, "["+strings.Join(batch, ",")+"]")
					batch = batch[:0]
				}
			}
			post(`{"type":"turn_started","turnId":"t1","source":"user"}`)
			post(`{"type":"tool_call_start","id":"a","name":"sh"}`)
			post(`{"type":"tool_call_start","id":"b","name":"sh"}`)
			for i := 3; i < n; i++ {
				// Ended: the turn's end closes the tool calls still open,
				// one event each, which is not what is measured here.
				post(fmt.Sprintf(`{"type":"tool_call_start","id":"c%d","name":"sh"}`, i))
				post(fmt.Sprintf(`{"type":"tool_call_end","id":"c%d","status":"completed"}`, i))
			}
			flush()

			w := newSentinelWriter()
			w.expect(`"snapshot_complete"`)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			var errOut syncBuffer
			done := make(chan int, 1)
			go func() {
				e := &env{stdout: w, stderr: &errOut, now: time.Now}
				code := run(ctx, []string{"rein", "--server", s.URL(), "--token", testToken, "watch", "s1", "--json", "--until-idle", "--idle-grace", "0"}, e)
				w.end()
				done <- code
			}()
			w.wait(b)
			w.expect(`"sentinel"`)

			b.ResetTimer()
			for i := range b.N {
				id := "a"
				if i%2 == 1 {
					id = "b"
				}
				post(fmt.Sprintf(`{"type":"tool_output_delta","id":%q,"delta":"line %d\n"}`, id, i))
			}
			post(`{"type":"tool_call_start","id":"sentinel","name":"sh"}`)
			flush()
			w.wait(b)
			b.StopTimer()
			// A watch that cannot keep up with the stream is dropped by
			// the server (its queue is full) and resumes: count those.
			b.ReportMetric(float64(strings.Count(errOut.String(), "reconnecting in")), "reconnects")

			postEvents(b, s, "s1", tok, `[{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}]`)
			if code := <-done; code != 0 {
				b.Fatalf("watch: exit %d", code)
			}
		})
	}
}

// sentinelWriter is rein's stdout in the benchmark: it keeps nothing,
// and wakes whoever waits for a line holding the string expected (rein
// writes each JSON line in one Write).
type sentinelWriter struct {
	mu    sync.Mutex
	cond  *sync.Cond
	want  []byte
	seen  bool
	ended bool // rein returned: nothing more is written
}

func newSentinelWriter() *sentinelWriter {
	w := &sentinelWriter{}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *sentinelWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.seen && w.want != nil && bytes.Contains(p, w.want) {
		w.seen = true
		w.cond.Broadcast()
	}
	return len(p), nil
}

// expect makes wait wait for a line holding s, written from now on.
func (w *sentinelWriter) expect(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.want, w.seen = []byte(s), false
}

// end says rein returned, which ends a wait.
func (w *sentinelWriter) end() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = true
	w.cond.Broadcast()
}

// wait waits for the line expect named, failing if rein returned first
// (a rein started with a context that ends keeps a broken test from
// hanging).
func (w *sentinelWriter) wait(b testing.TB) {
	b.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.seen && !w.ended {
		w.cond.Wait()
	}
	if !w.seen {
		b.Fatalf("rein returned without printing %s", w.want)
	}
}
