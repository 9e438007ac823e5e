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
		MinBackoff: time.Millisecond, IdleTimeout: 50 * time.Millisecond,
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
