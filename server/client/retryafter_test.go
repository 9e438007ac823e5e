package client_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/client"
)

// TestStreamWaitsForRetryAfter: a load balancer in front of the server
// answers a stream's (re)connection with 503, then 429, each with
// Retry-After: 1 (a deploy under way, a rate limit). The follow waited
// only its own backoff (here a few milliseconds; by default 100 ms to 5
// s), asking again and again for what it was told would not come sooner.
// It waits at least what Retry-After says, and then follows the stream.
func TestStreamWaitsForRetryAfter(t *testing.T) {
	s, err := app.New(app.Options{DBPath: filepath.Join(t.TempDir(), "rein.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := clientOf(t, s.URL()).CreateSession(t.Context(), "s", ""); err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(s.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1
	var streams atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := streams.Add(1)
		if n > 2 {
			proxy.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Content-Type", "application/json")
		status := map[int32]int{1: http.StatusServiceUnavailable, 2: http.StatusTooManyRequests}[n]
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"code":"unavailable","message":"deploying"}`)
	}))
	defer front.Close()

	var waits []time.Duration
	err = clientOf(t, front.URL).StreamArtifacts(t.Context(), "s", client.StreamOptions{
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		OnRetry: func(_ error, wait time.Duration) { waits = append(waits, wait) },
	}, func(ev client.ArtifactEvent) error {
		if ev.Name == protocol.SSESnapshotComplete {
			return client.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(waits) != 2 || waits[0] < time.Second || waits[1] < time.Second {
		t.Errorf("waits before reconnecting after a 503 and a 429 with Retry-After: 1: %v; want 2, each of 1s or more", waits)
	}
}
