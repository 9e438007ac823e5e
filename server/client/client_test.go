package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// TestStreamRetries: transient answers (500, a silent connection) are
// retried with Last-Event-ID, a permanent one (404) ends the stream with
// the server's error.
func TestStreamRetries(t *testing.T) {
	var calls atomic.Int32
	var lastIDs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
		switch n {
		case 1:
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write([]byte("id: 7\nevent: snapshot_complete\ndata: {\"rev\":7}\n\n"))
			w.(http.Flusher).Flush()
			<-r.Context().Done() // silent: the idle timeout drops it
		case 2:
			http.Error(w, "boom", http.StatusBadGateway)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"code":"not_found","message":"session \"s1\" not found"}`))
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL, "tok")
	if err != nil {
		t.Fatal(err)
	}
	var retries int
	var events []string
	err = c.StreamArtifacts(context.Background(), "s1", StreamOptions{
		// The idle timeout must outlast a loaded machine's gap between
		// connecting and reading the first event (50 ms did not, once,
		// at load average 30); it costs this test its length once.
		MinBackoff: time.Millisecond, IdleTimeout: time.Second,
		OnRetry: func(error, time.Duration) { retries++ },
	}, func(ev ArtifactEvent) error { events = append(events, ev.Name); return nil })
	var ce *Error
	if !errors.As(err, &ce) || ce.Status != 404 || !errors.Is(err, protocol.ErrNotFound) || err.Error() != `session "s1" not found (not_found)` {
		t.Fatalf("err = %v", err)
	}
	if retries != 2 || strings.Join(lastIDs, ",") != ",7,7" || strings.Join(events, ",") != "connected,snapshot_complete" {
		t.Errorf("retries %d, Last-Event-IDs %q, events %q", retries, lastIDs, events)
	}
}

func TestErrorWithoutJSONBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>bad gateway</html>", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, "")
	_, err := c.Sessions(context.Background(), "")
	if err == nil || err.Error() != "GET /sessions: HTTP 503 Service Unavailable (unavailable)" {
		t.Errorf("err = %v", err)
	}
}

// TestErrorCodes: the code read from an answer, and whether it is worth
// sending again, follow protocol's one table: a 409 no_sandbox waits for a
// sandbox, a 409 conflict does not change by waiting, a proxy's 502 with a
// stray JSON body stays retryable.
func TestErrorCodes(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		code      protocol.Code
		permanent bool
		message   string
	}{
		{"no sandbox", 409, `{"code":"no_sandbox","message":"no sandbox connected"}`, protocol.CodeNoSandbox, false, "no sandbox connected"},
		{"conflict", 409, `{"code":"conflict","message":"session exists"}`, protocol.CodeConflict, true, "session exists"},
		{"superseded", 409, `{"code":"superseded","message":"newer"}`, protocol.CodeSuperseded, true, "newer"},
		{"too large", 413, `{"code":"too_large","message":"big"}`, protocol.CodeTooLarge, true, "big"},
		{"proxy 502 with json", 502, `{"code":"not_found","message":"upstream"}`, protocol.CodeUnavailable, false, "POST /sessions/s1/commands: HTTP 502 Bad Gateway"},
		{"internal", 500, `{"code":"internal","message":"internal error"}`, protocol.CodeInternal, false, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c, _ := New(srv.URL, "")
			_, err := c.Prompt(context.Background(), "s1", "hi")
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T)", err, err)
			}
			if ce.Status != tt.status || ce.Code != tt.code || ce.Permanent() != tt.permanent || ce.Message != tt.message {
				t.Errorf("got {%d %q permanent=%v %q}, want {%d %q permanent=%v %q}", ce.Status, ce.Code, ce.Permanent(), ce.Message, tt.status, tt.code, tt.permanent, tt.message)
			}
			if protocol.CodeOf(err) != tt.code {
				t.Errorf("CodeOf = %q", protocol.CodeOf(err))
			}
		})
	}
}

// TestRotateSandboxToken: the route, the client token, and the new token
// read from the protocol.SandboxToken body.
func TestRotateSandboxToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/sessions/s%201/token" && r.URL.EscapedPath() != "/sessions/s%201/token" || r.Header.Get("Authorization") != "Bearer ctok" {
			http.Error(w, `{"code":"invalid","message":"bad route"}`, 400)
			return
		}
		w.Write([]byte(`{"sandboxToken":"new-token"}`))
	}))
	defer srv.Close()
	c, _ := New(srv.URL, "ctok")
	tok, err := c.RotateSandboxToken(context.Background(), "s 1")
	if err != nil || tok != "new-token" {
		t.Fatalf("RotateSandboxToken = %q, %v", tok, err)
	}
}

// TestOpenStream: one connection, Last-Event-ID and the token sent, the
// body handed over as it comes; an error answer is an *Error.
func TestOpenStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/sessions/s1/stream" {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"code":"not_found","message":"no such session"}`))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("id: 8\nevent: snapshot_complete\ndata: " + r.Header.Get("Last-Event-ID") + "|" + r.Header.Get("Authorization") + "\n\n"))
	}))
	defer srv.Close()
	c, _ := New(srv.URL, "tok")
	body, err := c.OpenStream(context.Background(), "/sessions/s1/stream", "7")
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	ev, err := NewEventReader(body).Next()
	if err != nil || ev.ID != "8" || !strings.Contains(ev.Data, "7|Bearer tok") {
		t.Fatalf("event %+v, %v", ev, err)
	}
	_, err = c.OpenStream(context.Background(), "/sessions/gone/stream", "")
	var ce *Error
	if !errors.As(err, &ce) || ce.Status != 404 || ce.Code != protocol.CodeNotFound {
		t.Fatalf("err = %v", err)
	}
}

// A line over the reader's bound would come back on every reconnection:
// following ends with the error instead of retrying for ever.
func TestStreamEndsOnLineTooLong(t *testing.T) {
	old := maxEventLine
	maxEventLine = 64 << 10 // the reader's first buffer: a bound below it would be that size anyway
	defer func() { maxEventLine = old }()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("id: 1\nevent: artifact_snapshot\ndata: " + strings.Repeat("x", 128<<10) + "\n\n"))
	}))
	defer srv.Close()
	c, err := New(srv.URL, "tok")
	if err != nil {
		t.Fatal(err)
	}
	retries := 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a client that retries for ever stops here
	defer cancel()
	err = c.StreamArtifacts(ctx, "s1", StreamOptions{
		MinBackoff: time.Millisecond, IdleTimeout: time.Second,
		OnRetry: func(error, time.Duration) { retries++ },
	}, func(ArtifactEvent) error { return nil })
	if !errors.Is(err, ErrLineTooLong) || retries != 0 || calls.Load() != 1 {
		t.Fatalf("err = %v after %d retries, %d connections; want ErrLineTooLong at once", err, retries, calls.Load())
	}
}

// TestRequestTimeout: a server that takes the request and never answers
// (a stuck proxy) ends a request at RequestTimeout, saying so, rather than
// holding the caller for ever; the caller's own cancellation is not
// reported as the bound's.
func TestRequestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c, err := New(srv.URL, "tok")
	if err != nil {
		t.Fatal(err)
	}
	if c.RequestTimeout != DefaultRequestTimeout {
		t.Fatalf("New's RequestTimeout %s; want %s", c.RequestTimeout, DefaultRequestTimeout)
	}
	c.RequestTimeout = 100 * time.Millisecond
	_, err = c.Sessions(context.Background(), "")
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "GET /sessions: no answer within 100ms") {
		t.Fatalf("Sessions from a server that never answers: %v", err)
	}

	c.RequestTimeout = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = c.Sessions(ctx, "")
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("Sessions cancelled by its caller: %v", err)
	}
}

// TestStreamApprovalsResumesFromAFullSnapshot: the approvals revision is
// each server process's own, from a random start, so after a restart (or
// on another replica) the ids may be lower than those the client saw. A
// full snapshot says where the client now is: it resumes from there, not
// from the highest id it ever saw, which the new process never issued
// (every reconnect would then be a whole snapshot again).
func TestStreamApprovalsResumesFromAFullSnapshot(t *testing.T) {
	var calls atomic.Int32
	lastIDs := make(chan string, 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lastIDs <- r.Header.Get("Last-Event-ID")
		w.Header().Set("Content-Type", "text/event-stream")
		switch calls.Add(1) {
		case 1: // the first process
			w.Write([]byte("id: 7000\nevent: snapshot_complete\ndata: {\"rev\":7000,\"full\":true}\n\n"))
			w.Write([]byte("id: 7001\nevent: approval_resolved\ndata: {\"sessionId\":\"s\",\"requestId\":\"r\",\"decision\":{}}\n\n"))
		case 2: // the next one, whose revisions start lower: 7001 is not its
			w.Write([]byte("id: 100\nevent: snapshot_complete\ndata: {\"rev\":100,\"full\":true}\n\n"))
			w.Write([]byte("id: 101\nevent: approval_resolved\ndata: {\"sessionId\":\"s\",\"requestId\":\"r2\",\"decision\":{}}\n\n"))
		}
		// Any later connection ends at once; the test is over by then.
	}))
	defer srv.Close()
	c, err := New(srv.URL, "tok")
	if err != nil {
		t.Fatal(err)
	}
	err = c.StreamApprovals(context.Background(), "", StreamOptions{MinBackoff: time.Millisecond}, func(ApprovalEvent) error {
		if calls.Load() >= 3 {
			return ErrStop
		}
		return nil
	})
	if calls.Load() < 3 {
		t.Fatalf("the stream ended after %d connections: %v", calls.Load(), err)
	}
	got := []string{<-lastIDs, <-lastIDs, <-lastIDs}
	if want := []string{"", "7001", "101"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Last-Event-IDs %q; want %q", got, want)
	}
}
