package server_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
)

// An idle stream keeps two goroutines for its whole life (its handler
// and net/http's background read), and with them their stacks. Opening
// the stream reads the store and writes the response header, both deep
// (modernc.org/sqlite; net/http's header writer); done on the handler
// goroutine they grew its stack to 16 KiB, 18-20 KiB a stream in all,
// half of what an idle subscriber cost. Done off it (httpapi's offStack),
// with the pings, the handler needs 4 KiB: 6-7 KiB a stream. Each stream
// here has had a ping before the stacks are counted.
//
// The test runs itself again in a child process with the runtime's
// adaptive initial stack size off (GODEBUG=adaptivestackstart=0): with it
// on, new goroutines start at 2, 4 or 8 KiB depending on the stacks the
// last collection saw, which moves the figure by more than the margin.
func TestIdleStreamStack(t *testing.T) {
	// Not parallel: it measures goroutines and their stacks.
	if os.Getenv(stackChildEnv) == "" {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestIdleStreamStack$", "-test.count=1", "-test.v")
		godebug := "adaptivestackstart=0"
		if v := os.Getenv("GODEBUG"); v != "" {
			godebug = v + "," + godebug
		}
		// The figure is the HTTP adapter's: SQLite, whatever REIN_TEST_DB says.
		cmd.Env = append(os.Environ(), stackChildEnv+"=1", "GODEBUG="+godebug, "REIN_TEST_DB=")
		out, err := cmd.CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "stream_stack_test.go") {
				t.Log(strings.TrimSpace(line))
			}
		}
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	s := start(t, app.Options{PingInterval: 10 * time.Millisecond})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("turn_started", "turnId", "t1", "source", "user"),
		ev("user_message", "text", "hello"),
		ev("text_delta", "delta", "hi"),
	})
	addr := strings.TrimPrefix(s.URL(), "http://")
	// open opens a stream on a bare connection (no client goroutines to
	// count) and reads it until its first ping: past the replay, and
	// through the ping path once.
	open := func() net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := fmt.Fprintf(conn, "GET /sessions/a/stream HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", addr); err != nil {
			t.Fatal(err)
		}
		if err := conn.SetReadDeadline(time.Now().Add(streamDeadline)); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(conn)
		snapshot := false
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			snapshot = snapshot || strings.HasPrefix(line, "event: snapshot_complete")
			if snapshot && line == ": ping\n" {
				return conn
			}
		}
	}
	// settled waits until the goroutines that opened streams (offStack's)
	// have ended, collects, and returns the bytes of goroutine stacks.
	settled := func(want int) uint64 {
		t.Helper()
		for runtime.NumGoroutine() > want {
			if t.Context().Err() != nil {
				t.Fatalf("%d goroutines; want %d", runtime.NumGoroutine(), want)
			}
			time.Sleep(time.Millisecond)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.StackInuse
	}
	base := runtime.NumGoroutine()
	open() // one-time costs (the first stream) go in before
	before := settled(base + 2)
	const n = 64
	for range n {
		open()
	}
	after := settled(base + 2 + 2*n)
	per := (int64(after) - int64(before)) / n
	t.Logf("goroutine stacks per idle stream: %d bytes", per)
	// A handler stack of 8 KiB makes it 10 KiB with the background read's
	// 2 KiB. With -race frames are larger and the stacks with them: 12-16
	// KiB a stream, 19.5-20.5 KiB before offStack.
	limit := int64(9 << 10)
	if server.RaceEnabled {
		limit = 18 << 10
	}
	if per >= limit {
		t.Errorf("goroutine stacks per idle stream: %d bytes; want under %d (a 4 KiB handler stack and the background read's)", per, limit)
	}
}

// stackChildEnv marks the child process TestIdleStreamStack runs.
const stackChildEnv = "REIN_TEST_STACK_CHILD"
