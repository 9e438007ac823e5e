package client_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/rein-ai/rein/server/app"
)

// TestVerifyHoldsAPage: Verify pages through a session's event log
// (GET /sessions/:id/events) and held every page to the end: verifying a
// session of a 1 GiB log (the --max-session-bytes default) took more than
// 1 GiB of memory. It must hold about one page at a time: the heap, taken
// as the last page is asked for, must not have grown by the log (24 MiB
// here) since the first.
func TestVerifyHoldsAPage(t *testing.T) {
	s, tok := sessionS(t)
	const posts, size = 96, 256 << 10 // 24 MiB of tool output
	chunk := strings.Repeat("v", size)
	postAs(t, s.URL(), tok, `{"type":"turn_started","turnId":"t1","source":"user"}`, `{"type":"tool_call_start","id":"c","name":"shell"}`)
	for range posts {
		postAs(t, s.URL(), tok, fmt.Sprintf(`{"type":"tool_output_delta","id":"c","delta":%q}`, chunk))
	}
	postAs(t, s.URL(), tok, `{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}`)

	// heap is the live heap (this process: the server's and the
	// client's), after a collection, as each page is asked for.
	var mu sync.Mutex
	var heap []uint64
	target, _ := url.Parse(s.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/events") {
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			mu.Lock()
			heap = append(heap, m.HeapAlloc)
			mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()

	v, err := clientOf(t, front.URL).Verify(t.Context(), "s", 8) // 8 events of 256 KiB a page
	if err != nil {
		t.Fatal(err)
	}
	if v.Events != posts+3 || v.Verified != 1 || v.FirstMismatch != nil {
		t.Fatalf("verify: %+v", v)
	}
	mu.Lock()
	defer mu.Unlock()
	first, last := heap[0], heap[len(heap)-1]
	if last > first+8<<20 {
		t.Errorf("the heap grew from %d KiB to %d KiB over %d pages of a %d MiB log; want about one page held", first>>10, last>>10, len(heap), posts*size>>20)
	}
}

// TestVerifyAcrossARecreatedSession: a session deleted and created again
// under its id while Verify pages through its log. Verify read the turns
// of one session and the pages of another, and reported a digest
// mismatch (or "the event log did not advance"), telling its user that
// a stored log had been changed when it had only been replaced. Each
// page names its session (Rein-Session-Created); Verify must say the
// session was created again, and claim nothing about its digests.
func TestVerifyAcrossARecreatedSession(t *testing.T) {
	s := newApp(t)
	c := clientOf(t, s.URL())
	fill := func(text string) {
		t.Helper()
		created, err := c.CreateSession(t.Context(), "s", "")
		if err != nil {
			t.Fatal(err)
		}
		postAs(t, s.URL(), created.SandboxToken, `{"type":"turn_started","turnId":"t1","source":"user"}`)
		for i := range 6 {
			postAs(t, s.URL(), created.SandboxToken, fmt.Sprintf(`{"type":"text_delta","id":"m","delta":"%s %d "}`, text, i))
		}
		postAs(t, s.URL(), created.SandboxToken, `{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}`)
	}
	fill("old")

	// The second page of the log is asked for only once the session was
	// deleted and created again, with another history.
	var mu sync.Mutex
	pages := 0
	target, _ := url.Parse(s.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/events") {
			mu.Lock()
			pages++
			n := pages
			mu.Unlock()
			if n == 2 {
				if err := c.DeleteSession(r.Context(), "s"); err != nil {
					t.Error(err)
				}
				fill("new session, longer text")
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()

	v, err := clientOf(t, front.URL).Verify(t.Context(), "s", 3)
	if err == nil || !strings.Contains(err.Error(), "created again") {
		t.Fatalf("verify across a delete and create: %+v, err %v; want an error saying the session was created again", v, err)
	}
}

// newApp runs a real rein-server on a SQLite file of its own, without
// auth (--sync normal: these tests measure no durability).
func newApp(t *testing.T) *app.App {
	t.Helper()
	s, err := app.New(app.Options{DBPath: filepath.Join(t.TempDir(), "rein.db"), Sync: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// sessionS runs newApp with the session "s" created, and returns its
// sandbox token.
func sessionS(t *testing.T) (*app.App, string) {
	t.Helper()
	s := newApp(t)
	created, err := clientOf(t, s.URL()).CreateSession(t.Context(), "s", "")
	if err != nil {
		t.Fatal(err)
	}
	return s, created.SandboxToken
}
