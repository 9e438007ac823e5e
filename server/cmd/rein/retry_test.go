package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/client"
)

// A command the server could not take for now (503) is sent again with its
// Idempotency-Key, and rein says so on stderr; the prompt is stored once.
func TestCommandResent(t *testing.T) {
	s := startServer(t, app.Options{})
	createSession(t, s, "s1")
	target, _ := url.Parse(s.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	var posts atomic.Int32
	var keys []string
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/commands") {
			keys = append(keys, r.Header.Get("Idempotency-Key"))
			if posts.Add(1) == 1 {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `{"code":"unavailable","message":"database unavailable"}`)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()

	r := rein(t, front.URL, "prompt", "--queue", "s1", "fix it")
	if r.code != 0 || r.stdout != "prompt sent to s1 (command 1)\n" {
		t.Fatalf("rein prompt through a 503: %+v", r)
	}
	if want := "rein: sending the command failed (database unavailable (unavailable)); sending it again in 250ms (it is stored once)\n"; r.stderr != want {
		t.Errorf("stderr %q; want %q", r.stderr, want)
	}
	if len(keys) != 2 || keys[0] == "" || keys[0] != keys[1] {
		t.Errorf("Idempotency-Keys sent: %q; want the same one twice", keys)
	}
	cl, err := client.New(s.URL(), testToken)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := cl.Session(t.Context(), "s1")
	if err != nil || rec.PendingCommands != 1 {
		t.Fatalf("session after the resend: %+v, %v; want 1 pending command", rec, err)
	}
}
